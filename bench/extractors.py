"""HTML main-text extractors, compared on the same pages in one run: resiliparse (what
pipeline/ingest/html.py uses) against trafilatura.

Pages: ../shared/data/html/en-news (25 news pages with reference article bodies from the
scrapinghub article-extraction benchmark) and every HTML response of the WARC files in
../shared/data/crawl/warc. Speed is MB of HTML per second on one core; quality is word-level F1
against the reference bodies (the scrapinghub benchmark's measure), plus how often boilerplate
lines (menus, footers) that are absent from the reference survive.

    .venv/bin/python bench/extractors.py
"""
from __future__ import annotations

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
ROUNDS = 3


def trafilatura_text(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=False) or ""


EXTRACTORS = {"resiliparse": html_to_text, "trafilatura": trafilatura_text}


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


def warc_pages() -> list[str]:
    pages = []
    for path in sorted((DATA / "crawl/warc").glob("*.warc*")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "response" and rec.http_headers and "html" in (rec.http_headers.get_header("Content-Type") or ""):
                    pages.append(charset.decode(rec.content_stream().read(), rec.http_headers.get_header("Content-Type"))[0])
    return pages


WORD = re.compile(r"\w+")


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
    news, crawl = news_pages(), warc_pages()
    print(f"pages: {len(news)} news pages with reference text, {len(crawl)} HTML responses from crawl/warc")
    print(f"{'extractor':<12} {'news MB/s':>10} {'warc MB/s':>10} {'news F1':>8} {'empty':>6}")
    results = {}
    for name, extract in EXTRACTORS.items():
        scores = [f1(extract(html), ref) for html, ref in news]
        empty = sum(1 for p in crawl if not extract(p).strip())
        results[name] = (speed(extract, [h for h, _ in news]), speed(extract, crawl), sum(scores) / len(scores), empty)
        print(f"{name:<12} {results[name][0]:>10.1f} {results[name][1]:>10.1f} {results[name][2]:>8.3f} {empty:>6}")
    r, t = results["resiliparse"], results["trafilatura"]
    print(f"resiliparse / trafilatura speed: news {r[0] / t[0]:.1f}x, warc {r[1] / t[1]:.1f}x; F1 {r[2]:.3f} vs {t[2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
