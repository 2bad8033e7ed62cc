"""How much noise one copy of a page carries, for choosing the cleaner of two near-duplicates.

Copies of a page differ in what was added or damaged on the way: navigation and share-button
lines padded around the article, lines repeated by a template, hard wraps that cut sentences into
lines, whitespace runs, and Chinese punctuation typed as ASCII ("，" -> ", "). The original has
the fewest of these, so dedup's survivor rule ranks copies by `copy_noise` after the quality
score. Pure string logic, no engine imports.
"""
from __future__ import annotations

import re

# Line ends that close a sentence (C4's and FineWeb's notion of a prose line), both scripts.
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";", "。", "！", "？", "」", "』", "”", "…", "）", ")")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Damage inside lines: ASCII punctuation or a space between two Han characters ("中国, 北京",
# "中 国"), a run of two or more spaces or a tab between words, whitespace left at a line's end.
_DEFECT = re.compile(rf"(?<=[{_HAN}])[,;:!?(]\s*(?=[{_HAN}])|(?<=[{_HAN}]) +(?=[{_HAN}])|(?<=\S)(?: {{2,}}|\t)(?=\S)"
                     r"|(?<=\S)[ \t]+(?=\n)")


def copy_noise(text: str | None) -> int:
    """Duplicated lines + lines that do not end a sentence + typographic defects (see `_DEFECT`).

    Counts, not shares, so padding adds noise however long the article is; every copy of a page
    shares the page's own headings, so they cancel out between copies."""
    seen: set[str] = set()
    noise = 0
    for line in (text or "").split("\n"):
        line = line.strip()
        if not line:
            continue
        if line in seen:
            noise += 1
        else:
            seen.add(line)
            if not line.endswith(TERMINAL):
                noise += 1
    return noise + len(_DEFECT.findall(text or ""))
