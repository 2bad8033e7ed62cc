"""Paragraphs (lines) as cross-document dedup sees them: a key per normalized line, and removal.

CCNet deduplicates web text by paragraph: a line that appears on many pages (navigation, footers,
legal notices, "related articles", a Chinese portal's menus) is boilerplate whatever the rest of
the page says. A line's key is a 64-bit hash of the line normalized as MinHash dedup normalizes
text (filters.fast_normalize: English lowercased, digits folded, punctuation dropped; Chinese also
Traditional -> Simplified and punctuation folded), so copies that differ in case, numbers,
punctuation style or script share a key. Lines too short to judge (`min_chars` normalized
characters: "OK", "1.") get no key and are never removed. Pure string logic, no engine imports.
"""
from __future__ import annotations

import hashlib

from filters.fast_normalize import normalize_chinese, normalize_word_lines, normalize_words
from filters.minhash import is_chinese


def normalized_line(line: str, lang: str | None) -> str:
    if is_chinese(lang):
        return normalize_chinese(line).replace(" ", "")
    return normalize_words(line)


def normalized_lines(text: str, lang: str | None) -> list[str]:
    """`normalized_line` of each of the text's "\n"-separated lines (one compiled pass unless Chinese)."""
    if is_chinese(lang):
        # A Chinese line is normalized alone, at a cost per call however short it is: each distinct
        # line once, so that blank and repeated lines cost a lookup (a page of empty lines took
        # seconds; docs/benchmarks.md, "Adversarial pages").
        lines = text.split("\n")
        normalized = {line: normalized_line(line, lang) for line in dict.fromkeys(lines)}
        return [normalized[line] for line in lines]
    return normalize_word_lines(text)


def line_key(normalized: str, lang: str | None) -> int:
    """64-bit key of a normalized line; Chinese and other lines never share one."""
    scope = "zh" if is_chinese(lang) else "*"
    digest = hashlib.blake2b(f"{scope}\0{normalized}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def paragraph_keys(text: str | None, lang: str | None, min_chars: int) -> list[int]:
    """The distinct keys of a document's lines that are long enough to judge, in first-seen order."""
    keys: dict[int, None] = {}
    for normalized in dict.fromkeys(normalized_lines(text or "", lang)):  # a repeated line has its line's key
        if len(normalized) >= min_chars:
            keys.setdefault(line_key(normalized, lang), None)
    return list(keys)


def remove_paragraphs(text: str, lang: str | None, remove: set[int], min_chars: int) -> tuple[str, list[tuple[int, str]]]:
    """(text without the lines whose key is in `remove`, [(key, removed line), ...])."""
    kept, removed = [], []
    for line, normalized in zip(text.split("\n"), normalized_lines(text, lang)):
        key = line_key(normalized, lang) if len(normalized) >= min_chars else None
        if key is not None and key in remove:
            removed.append((key, line))
        else:
            kept.append(line)
    return "\n".join(kept).strip("\n") if removed else text, removed
