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
# `_DEFECT` without its Han alternatives, which cannot match in a text without Han characters, and
# without the lookbehind `(?<=\S)` that made the regex engine try it at every position: a match here
# counts where the character before it is not whitespace. Each `_DEFECT` match is the start of a run
# of spaces and tabs, where this matches the same span; any other match of this lies inside a run.
_SPACING = re.compile(r"  +(?=\S)|\t(?=\S)|[ \t]+(?=\n)")
_HAN_CHAR = re.compile(f"[{_HAN}]")


def defects(text: str) -> int:
    """How many matches of `_DEFECT` the text holds (the same count, about half the time on English)."""
    if not text.isascii() and _HAN_CHAR.search(text):
        return len(_DEFECT.findall(text))
    return sum(1 for m in _SPACING.finditer(text) if m.start() and not text[m.start() - 1].isspace())


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
    return noise + defects(text or "")
