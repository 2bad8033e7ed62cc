"""HTML main-text extractors, compared on the same pages in one run: resiliparse (what
pipeline/ingest/html.py uses) in its modes against trafilatura.

Pages: ../shared/data/html/en-news (25 news pages with reference article bodies from the
scrapinghub article-extraction benchmark), every HTML response of the WARC files in
../shared/data/crawl/warc (speed, empty outputs), and 12 of those labelled by hand in
bench/extraction_labels.jsonl (list-heavy pages, portals, a Chinese catalogue, a Wikipedia article,
a table, a forum-post listing). A label names the first and last line of the page's content (by a
short span of each) and the lines inside to leave out; the reference is those lines of
resiliparse's full-text rendering. Speed is MB of HTML per second on one core; quality is
word-level F1 against the references (the scrapinghub benchmark's measure; Chinese counted per
character).

Modes: `main` is pipeline/ingest/html.py's main-content extraction; `full` is resiliparse with
main_content=False (same options otherwise); `main+lists` is html.py with its list fallback (the
full-text lines between the first and last substantial lines that main-content kept, so list items
and table rows inside the article come back; see html.py); trafilatura with its defaults and with
favor_recall.

    .venv/bin/python bench/extractors.py
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from pipeline.ingest import charset  # noqa: E402
from pipeline.ingest.html import html_to_text  # noqa: E402

DATA = Path(REPO.parent / "shared" / "data")
LABELS = REPO / "bench" / "extraction_labels.jsonl"
ROUNDS = 3


def trafilatura_text(html: str, favor_recall: bool = False) -> str:
    import trafilatura

    return trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=False,
                               favor_recall=favor_recall) or ""


def full_text(html: str) -> str:
    return html_to_text(html, main_content=False)


def main_with_lists(html: str) -> str:
    return html_to_text(html, list_fallback=True)


EXTRACTORS = {"main": html_to_text, "full": full_text, "main+lists": main_with_lists,
              "trafilatura": trafilatura_text, "trafilatura recall": lambda h: trafilatura_text(h, True)}


def news_pages() -> list[tuple[str, str]]:
    """(html, reference text) for the pages that have a reference body."""
    refs = {}
    for line in (DATA / "text/en-news-scrapinghub.jsonl").read_text().splitlines():
        row = json.loads(line)
        refs[row["id"].split("-", 1)[1]] = row["text"]
    pages = []
    for path in sorted((DATA / "html/en-news").glob("*.html.gz")):
        ref = refs.get(path.name[:16])
        if ref:
            pages.append((charset.decode(gzip.decompress(path.read_bytes()), "text/html")[0], ref))
    return pages


def warc_pages(path_glob: str = "*.warc*") -> list[tuple[str, str, str]]:
    """(file name, URL, html) of every HTML response."""
    pages = []
    for path in sorted((DATA / "crawl/warc").glob(path_glob)):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "response" and rec.http_headers and "html" in (rec.http_headers.get_header("Content-Type") or ""):
                    html = charset.decode(rec.content_stream().read(), rec.http_headers.get_header("Content-Type"))[0]
                    pages.append((path.name, rec.rec_headers.get_header("WARC-Target-URI"), html))
    return pages


def labelled_pages(labels: Path = LABELS) -> list[tuple[dict, str, str]]:
    """(label, html, reference text) for every labelled page; a label that matches no page or
    whose spans are not found is an error (the data or the labels changed)."""
    out = []
    for line in labels.read_text(encoding="utf-8").splitlines():
        label = json.loads(line)
        html = next((h for name, url, h in warc_pages(label["file"]) if url.strip("<>").startswith(label["url"])), None)
        if html is None:
            raise LookupError(f"{labels}: no HTML response for {label['url']} in {label['file']}")
        lines = full_text(html).split("\n")
        start = next((i for i, text in enumerate(lines) if label["start"] in text), None)
        end = next((i for i in range(len(lines) - 1, -1, -1) if label["end"] in lines[i]), None)
        if start is None or end is None or end < start:
            raise LookupError(f"{labels}: spans of {label['url']} not found in its full text")
        exclude = [re.compile(pattern) for pattern in label.get("exclude", [])]
        reference = [text for text in lines[start:end + 1] if not any(p.search(text) for p in exclude)]
        out.append((label, html, "\n".join(reference)))
    return out


# Words: runs of letters and digits, except that every Han character counts as one word.
WORD = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+")


def f1(candidate: str, reference: str) -> float:
    c, r = Counter(WORD.findall(candidate.lower())), Counter(WORD.findall(reference.lower()))
    overlap = sum((c & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(c.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def speed(extract, pages: list[str]) -> float:
    """MB of HTML per second, best of ROUNDS."""
    size = sum(len(p.encode("utf-8")) for p in pages)
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for p in pages:
            extract(p)
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    news, crawl, labelled = news_pages(), [h for _, _, h in warc_pages()], labelled_pages()
    kinds = sorted({label["kind"] for label, _, _ in labelled})
    print(f"pages: {len(news)} news pages with reference text, {len(crawl)} HTML responses from crawl/warc, "
          f"{len(labelled)} of them labelled ({', '.join(kinds)})")
    print("| extractor | news MB/s | warc MB/s | news F1 | labelled F1 | " + " | ".join(f"{k} F1" for k in kinds)
          + " | empty |")
    print("|---|" + "---:|" * (5 + len(kinds)))
    results, per_page = {}, {}
    for name, extract in EXTRACTORS.items():
        news_f1 = [f1(extract(html), ref) for html, ref in news]
        per_page[name] = [f1(extract(html), ref) for _, html, ref in labelled]
        by_kind = [[s for (label, _, _), s in zip(labelled, per_page[name]) if label["kind"] == k] for k in kinds]
        empty = sum(1 for p in crawl if not extract(p).strip())
        results[name] = (speed(extract, [h for h, _ in news]), speed(extract, crawl), sum(news_f1) / len(news_f1),
                         sum(per_page[name]) / len(labelled))
        print(f"| {name} | {results[name][0]:.1f} | {results[name][1]:.1f} | {results[name][2]:.3f} "
              f"| {results[name][3]:.3f} | " + " | ".join(f"{sum(s) / len(s):.3f}" for s in by_kind) + f" | {empty} |")
    print("\nper labelled page, word F1:")
    print("| page | kind | " + " | ".join(EXTRACTORS) + " |")
    print("|---|---|" + "---:|" * len(EXTRACTORS))
    for i, (label, _, _) in enumerate(labelled):
        print(f"| {label['url']} | {label['kind']} | " + " | ".join(f"{per_page[n][i]:.3f}" for n in EXTRACTORS) + " |")
    r, t = results["main"], results["trafilatura"]
    print(f"\nresiliparse main / trafilatura speed: news {r[0] / t[0]:.1f}x, warc {r[1] / t[1]:.1f}x; "
          f"news F1 {r[2]:.3f} vs {t[2]:.3f}; labelled F1 {r[3]:.3f} vs {t[3]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
