"""Chinese text normalization: script conversion (OpenCC), width folding, whitespace cleanup.

Pure string functions, safe to call per document. The OpenCC converters are built once per
process (they load dictionaries) and reused.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Sequence

import opencc

# Full-width forms U+FF01..U+FF5E are ASCII U+0021..U+007E shifted by 0xFEE0. Chinese typesetting
# uses some of them as its own punctuation (，：；！？（）～); those stay full-width so that
# folding never changes how Chinese prose is punctuated. Everything else (letters, digits, symbols
# such as ＃％＋／＠) folds, as does the ideographic space U+3000.
_CHINESE_FULLWIDTH_PUNCTUATION = "，：；！？（）～"
_WIDTH_TABLE = {
    code: code - 0xFEE0
    for code in range(0xFF01, 0xFF5F)
    if chr(code) not in _CHINESE_FULLWIDTH_PUNCTUATION
}
_WIDTH_TABLE[0x3000] = 0x20
# Between two ASCII digits these are number separators ("１，０００" -> "1,000", "３：３０" -> "3:30").
_DIGIT_SEPARATOR = re.compile(r"(?<=[0-9])[，：](?=[0-9])")
_FULLWIDTH_TO_ASCII = {"，": ",", "：": ":"}

# Chinese and full-width punctuation -> nearest ASCII, so that shingles of the same sentence match
# whichever punctuation style a copy used. Lossy: for dedup keys only, never for stored text.
_PUNCTUATION_TABLE = str.maketrans(
    {
        "，": ",", "、": ",", "。": ".", "．": ".", "｡": ".",
        "：": ":", "；": ";", "！": "!", "？": "?",
        "（": "(", "）": ")", "【": "[", "】": "]", "〔": "[", "〕": "]",
        "［": "[", "］": "]", "｛": "{", "｝": "}",
        "「": '"', "」": '"', "『": '"', "』": '"', "“": '"', "”": '"', "＂": '"',
        "‘": "'", "’": "'", "＇": "'",
        "《": "<", "》": ">", "〈": "<", "〉": ">",
        "～": "~", "〜": "~", "—": "-", "－": "-", "–": "-", "·": ".", "・": ".",
        "…": "...",
    }
)

# Control characters other than tab and newline, and invisible format characters that crawls
# carry (zero-width space, word joiner, byte-order mark). ZWJ (U+200D) stays: emoji need it.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff]")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
# Horizontal whitespace: every Unicode space separator except the newline.
_SPACE_RUN = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@functools.lru_cache(maxsize=None)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese with OpenCC's t2s (phrase-aware) tables."""
    return _converter("t2s").convert(text)


def _to_simplified_except(text: str, skips: Sequence[bool]) -> str:
    """`to_simplified` on the lines not flagged in `skips`, one call per run of them: no t2s
    phrase holds a newline, so each line converts as it would in the whole text."""
    converted = []
    for skip, run in itertools.groupby(zip(text.split("\n"), skips, strict=True), key=lambda pair: pair[1]):
        lines = "\n".join(line for line, _ in run)
        converted.append(lines if skip else to_simplified(lines))
    return "\n".join(converted)


def to_traditional(text: str) -> str:
    """Simplified -> Traditional Chinese with OpenCC's s2t tables."""
    return _converter("s2t").convert(text)


def fold_width(text: str) -> str:
    """Full-width ASCII letters, digits and symbols to half-width; ideographic space to space.

    Chinese punctuation (，。、「」：；！？（）～ ...) is left as it is, except ，and ：
    between two digits, which are number separators.
    """
    folded = text.translate(_WIDTH_TABLE)
    if "，" in folded or "：" in folded:
        folded = _DIGIT_SEPARATOR.sub(lambda m: _FULLWIDTH_TO_ASCII[m.group()], folded)
    return folded


def fold_punctuation(text: str) -> str:
    """Chinese and full-width punctuation to ASCII equivalents (for dedup shingling only)."""
    return text.translate(_PUNCTUATION_TABLE)


def clean_whitespace(text: str) -> str:
    """Remove control/invisible characters, collapse spaces inside lines, normalise blank lines.

    Line breaks are kept (GLM-130B keeps newlines as tokens): CR/CRLF and Unicode line separators
    become "\\n", each line loses its leading/trailing spaces and has inner runs of spaces and tabs
    collapsed to one space, and at most one blank line separates paragraphs.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = _INVISIBLE.sub("", text)
    lines = [_SPACE_RUN.sub(" ", line).strip(" ") for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def normalize_chinese(text: str, t2s: bool = True, fold_width: bool = True,
                      whitespace: bool = True, t2s_skips: Sequence[bool] | None = None) -> str:
    """The normalization applied to Chinese documents: optional t2s, whitespace, width folding.

    `t2s_skips`: per "\\n"-separated line, True where t2s leaves the line as written (Japanese
    kanji and Korean Hanja on a Chinese page are not Traditional Chinese); None converts every
    line. Whitespace and width folding apply to every line: line breaks, control characters and
    full-width ASCII mean the same in Japanese and Korean text (NFKC folds them alike), and one
    document keeps one convention.
    Whitespace goes before width folding so that removed control characters cannot leave a
    number separator ("１\x00，１") for a second pass to fold: the result is idempotent."""
    if t2s:
        text = to_simplified(text) if t2s_skips is None else _to_simplified_except(text, t2s_skips)
    if whitespace:
        text = clean_whitespace(text)
    if fold_width:
        text = _fold_width(text)
    return text


_fold_width = fold_width  # the parameter of normalize_chinese shadows the function's name
