"""pipeline.ingest.html's list fallback on real crawl pages: list items inside the article come
back, menus and footers stay out, every main-content line stays (issue 14 item 8)."""
from __future__ import annotations

import pytest

from pipeline.ingest.html import html_to_text


def _page(shared_data, file: str, url: str) -> str:
    from warcio.archiveiterator import ArchiveIterator

    from pipeline.ingest import charset

    with open(shared_data / "crawl" / "warc" / file, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type == "response" and rec.rec_headers.get_header("WARC-Target-URI").strip("<>") == url:
                content_type = rec.http_headers.get_header("Content-Type")
                return charset.decode(rec.content_stream().read(), content_type)[0]
    raise LookupError(f"{url} not in {file}")


@pytest.mark.parametrize("file, url, restored, left_out", [
    # Wikipedia: the monuments list item of the article; not the language menu nor the footer.
    ("cc-main-2024-22-whirlwind.warc.gz", "https://an.wikipedia.org/wiki/Escopete",
     ["Ilesia parroquial de l'Asunción"], ["Asturianu", "Politica de privacidat", "Descargar como PDF"]),
    # A blog post that is mostly lists of links under topic headings; not the site menu.
    ("wget-2024-academic-en.warc.gz", "https://maria-antoniak.github.io/2018/11/19/data-science-crash-course.html",
     ["Understanding LSTM Networks by Christopher Olah", "The Illustrated Transformer by Jay Alammar"], ["Contact"]),
    # A numbered publication list: the titles (ordered-list items) between authors and venues.
    ("wget-2024-academic-en.warc.gz", "https://www.jonathanbragg.com/",
     ["Mitigating Barriers to Public Social Interaction", "FLEX: Unifying Evaluation for Few-Shot NLP"], ["Headshot"]),
])
def test_list_items_inside_the_article_come_back(shared_data, file, url, restored, left_out):
    html = _page(shared_data, file, url)
    main, with_lists = html_to_text(html).split("\n"), html_to_text(html, list_fallback=True).split("\n")
    for item in restored:
        assert not any(item in line for line in main) and any(item in line for line in with_lists), item
    for menu in left_out:
        assert not any(line.startswith(menu) for line in with_lists), menu
    assert _is_subsequence(main, with_lists)


def test_main_lines_all_stay_on_every_crawl_page(shared_data):
    from warcio.archiveiterator import ArchiveIterator

    from pipeline.ingest import charset

    pages = []
    for path in sorted((shared_data / "crawl" / "warc").glob("*.warc*")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                content_type = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
                if rec.rec_type == "response" and "html" in (content_type or ""):
                    pages.append(charset.decode(rec.content_stream().read(), content_type)[0])
    assert len(pages) > 40
    grew = 0
    for html in pages:
        main, with_lists = html_to_text(html).split("\n"), html_to_text(html, list_fallback=True).split("\n")
        assert _is_subsequence(main, with_lists)
        grew += len(with_lists) > len(main)
    assert grew >= 5


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    rest = iter(long)
    return all(line in rest for line in short)
