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
# without the lookbehind `(?<=\S)` that made the regex engine try it at every position, as one
# literal-led regex per alternative: a match counts where the characters around it are not whitespace.
# Each `_DEFECT` match is the start of a run of spaces and tabs, where one of these matches the same
# span (the alternatives exclude each other there); any other match of these lies inside a run.
# The character after a run of spaces is checked here, not by a lookahead: with one, a run that no
# such character follows was searched to its end from each of its spaces (100 kB: over a minute).
# The last alternative, whitespace before a line break, is checked per line.
_SPACES = re.compile(r"  +")
_TAB = re.compile(r"\t(?=\S)")
_HAN_CHAR = re.compile(f"[{_HAN}]")


def _between_non_spaces(pattern: re.Pattern, text: str) -> int:
    return sum(1 for m in pattern.finditer(text) if 0 < m.start() and m.end() < len(text)
               and not text[m.start() - 1].isspace() and not text[m.end()].isspace())


def _defects(text: str, lines: list[str]) -> int:
    """`defects` of a text split at "\n" into `lines`."""
    if not text.isascii() and _HAN_CHAR.search(text):
        return len(_DEFECT.findall(text))
    n = _between_non_spaces(_SPACES, text) + (_between_non_spaces(_TAB, text) if "\t" in text else 0)
    for line in lines[:-1]:  # spaces and tabs before a line break, after a character that is not a space
        kept = line.rstrip(" \t")
        n += len(kept) < len(line) and kept != "" and not kept[-1].isspace()
    return n


def defects(text: str) -> int:
    """How many matches of `_DEFECT` the text holds (the same count, a seventh of the time on English)."""
    return _defects(text, text.split("\n"))


def copy_noise(text: str | None) -> int:
    """Duplicated lines + lines that do not end a sentence + typographic defects (see `_DEFECT`).

    Counts, not shares, so padding adds noise however long the article is; every copy of a page
    shares the page's own headings, so they cancel out between copies."""
    seen: set[str] = set()
    noise = 0
    lines = (text or "").split("\n")
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if line in seen:
            noise += 1
        else:
            seen.add(line)
            if not line.endswith(TERMINAL):
                noise += 1
    return noise + _defects(text or "", lines)
