"""HTML to main text with resiliparse, within a per-page budget.

Chosen over trafilatura by `bench/extractors.py` (figures in docs/benchmarks.md): on the same pages
it is 20-40 times faster for a few points less word F1 against reference article bodies, and its
main-content mode drops menus, footers and link lists. Comment sections and post metadata (bylines,
dates, share counts) are left out too: that raised F1 from 0.89 to 0.94 on the reference pages.
Block elements (paragraphs, headings, list items) come out one per line; blank lines and the
indentation resiliparse keeps for nesting are removed, so a paragraph is exactly one line.

Budget: resiliparse's extraction time grows with the square of the nesting depth (100k nested
<div> take 573 s), so a page is measured before it is parsed: its size, and the depth its tags
reach, by one linear scan. A page over either limit raises ExtractionOverBudget with the figures.
A scan rather than a timer, because a timer needs a signal (main thread only: Spark's Python worker
and Beam's DirectRunner run tasks elsewhere) or a process to kill, and a time limit would make the
output depend on the machine's speed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

# Start and end tags; void elements never close, so they do not nest.
_TAG = re.compile(r"<(/?)(?!(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)\b)[a-z]", re.I)


class ExtractionOverBudget(ValueError):
    """A page over the extraction budget (the message has the figures)."""


@dataclass(frozen=True)
class ExtractionBudget:
    max_depth: int = 2000
    max_bytes: int = 16 << 20


def tag_depth(html: str) -> int:
    """The deepest nesting of start tags, counting every start tag as open until its end tag (an
    upper bound: unclosed <p> and <li> count as open); linear in the page's length.

    Depth is the running count of start minus end tags, floored at 0 (a stray end tag closes
    nothing); floored, it equals the running count minus its lowest point so far (when below 0),
    which numpy computes without a Python loop (2x faster than one on tag-dense pages)."""
    slashes = _TAG.findall(html)
    if not slashes:
        return 0
    running = np.cumsum(1 - 2 * (np.array(slashes, dtype="<U1") == "/"))
    return int((running - np.minimum(np.minimum.accumulate(running), 0)).max())


def check_budget(html: str, budget: ExtractionBudget) -> None:
    if len(html) > budget.max_bytes:
        raise ExtractionOverBudget(f"page of {len(html)} characters is over ingest.max_html_bytes ({budget.max_bytes})")
    if html.count("<") - html.count("</") <= budget.max_depth:  # cannot nest deeper than it has start tags
        return
    depth = tag_depth(html)
    if depth > budget.max_depth:
        raise ExtractionOverBudget(f"tags nest {depth} deep, over ingest.max_html_depth ({budget.max_depth})")


@dataclass(frozen=True)
class Page:
    """What ingest keeps of an HTML page."""

    text: str
    title: str | None  # the <title> element's text (the parsed tree has it for free); None without one


def html_page(html: str, budget: ExtractionBudget = ExtractionBudget(), *, main_content: bool = True,
              list_fallback: bool = False) -> Page:
    """Main text (`main_content`; else every text block), one block per line, and the title.
    `list_fallback` adds back what main-content mode dropped inside the article (see
    `with_inner_lines`)."""
    check_budget(html, budget)
    tree = HTMLTree.parse(html)
    lines = _extract_lines(tree, main_content)
    if main_content and list_fallback:
        lines = with_inner_lines(lines, _extract_lines(tree, False, list_bullets=True))
    title = (tree.title or "").replace("\ufeff", "").strip()
    return Page("\n".join(lines), title or None)


def html_to_text(html: str, budget: ExtractionBudget = ExtractionBudget(), *, main_content: bool = True,
                 list_fallback: bool = False) -> str:
    """`html_page`'s text."""
    return html_page(html, budget, main_content=main_content, list_fallback=list_fallback).text


def _extract_lines(tree: HTMLTree, main_content: bool, list_bullets: bool = False) -> list[str]:
    text = extract_plain_text(tree, preserve_formatting=True, main_content=main_content, list_bullets=list_bullets,
                              alt_texts=False, links=False, form_fields=False, noscript=False,
                              comments=False, post_meta=False)
    text = text.replace("\ufeff", "")  # byte-order marks inside pages (after a meta-declared charset)
    return [line.strip() for line in text.splitlines() if line.strip()]


# Chosen on bench/extractors.py's pages (news references and the labelled crawl pages): the
# article starts at main's first line of START_ANCHOR_BYTES (UTF-8: a sentence; at 40, headlines
# and bylines above the menu let it in: news F1 0.941 -> 0.934) and ends at its last line of
# END_ANCHOR_BYTES (a section heading such as Wikipedia's "References[edit]" counts: at 80 the
# article's closing lists stay out); list items shorter than ITEM_BYTES are menus and share buttons
# more often than content (items of any length: news F1 0.934).
START_ANCHOR_BYTES = 80
END_ANCHOR_BYTES = 40
ITEM_BYTES = 20
_LIST_ITEM = re.compile(r"(?:\u2022|\d+\.) ")  # resiliparse's list_bullets markers: unordered, ordered


def with_inner_lines(main: list[str], full: list[str]) -> list[str]:
    """`main` with the list items and table rows of `full` (extracted with list bullets) that lie
    between main's first and last substantial lines restored, in page order; every line of
    `main` stays.

    resiliparse's main-content mode drops short list items and table rows even inside the article
    (a Wikipedia article's list of monuments, a numbered publication list, a blog post of links); in
    the full text they sit between the article's first and last paragraphs, while menus and
    footers sit outside. Other full-text lines there (captions, bylines) and items shorter than
    ITEM_BYTES stay out. Unchanged when no substantial line of `main` is found in `full`."""
    size = [len(line.encode()) for line in main]
    first = next((i for i, n in enumerate(size) if n >= START_ANCHOR_BYTES), None)
    if first is None:
        return main
    last = max(i for i, n in enumerate(size) if n >= END_ANCHOR_BYTES)
    items = [_LIST_ITEM.match(line) for line in full]
    inner = [line[m.end():] if m else line for line, m in zip(full, items)]
    start = next((i for i, line in enumerate(inner) if main[first] in (line, full[i])), None)
    end = next((i for i in range(len(inner) - 1, -1, -1) if main[last] in (inner[i], full[i])), None)
    if start is None or end is None or end < start:
        return main
    article = main[first:last + 1]
    kept, merged, j = set(article), [], 0
    for line, raw, item in zip(inner[start:end + 1], full[start:end + 1], items[start:end + 1]):
        if j < len(article) and article[j] in (line, raw):
            merged.append(article[j])
            j += 1
        elif line not in kept and (item or "\t" in line) and len(line.encode()) >= ITEM_BYTES:
            merged.append(line)
    return main[:first] + merged + article[j:] + main[last + 1:]
