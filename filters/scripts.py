"""Unicode script counting and Simplified/Traditional Chinese detection.

Scripts come from the Unicode Script property (via the `regex` module), so "Han" is every CJK
ideograph block including the extensions, and kana, Hangul, Cyrillic, ... are exact. Characters of
no particular script (digits, punctuation, symbols, whitespace, combining marks) are not counted:
shares computed from `script_counts` are shares of *letters*.

Counting goes through a per-process lookup table indexed by code point (built once, ~0.3 s), so a
document costs one UTF-32 encode and one numpy gather: >100 MB/s, where a regex scan over script
runs managed 8 MB/s on English.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import regex

from filters.normalize import to_simplified, to_traditional
from filters.repetition import code_points

# Scripts worth telling apart for language ID; any other letter counts as "Other".
SCRIPTS = (
    "Latin", "Han", "Hiragana", "Katakana", "Hangul", "Cyrillic", "Arabic", "Hebrew", "Greek",
    "Armenian", "Georgian", "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil",
    "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao", "Khmer", "Myanmar", "Tibetan",
    "Ethiopic", "Thaana",
)
# ISO 15924 codes, for the `script` column of documents.
ISO15924 = {
    "Latin": "Latn", "Han": "Hani", "Hiragana": "Jpan", "Katakana": "Jpan", "Hangul": "Kore",
    "Cyrillic": "Cyrl", "Arabic": "Arab", "Hebrew": "Hebr", "Greek": "Grek", "Armenian": "Armn",
    "Georgian": "Geor", "Devanagari": "Deva", "Bengali": "Beng", "Gurmukhi": "Guru",
    "Gujarati": "Gujr", "Oriya": "Orya", "Tamil": "Taml", "Telugu": "Telu", "Kannada": "Knda",
    "Malayalam": "Mlym", "Sinhala": "Sinh", "Thai": "Thai", "Lao": "Laoo", "Khmer": "Khmr",
    "Myanmar": "Mymr", "Tibetan": "Tibt", "Ethiopic": "Ethi", "Thaana": "Thaa", "Other": "Zyyy",
}

# Table values (slots): 0 = no script (punctuation, digits, symbols), 1..len(SCRIPTS) = SCRIPTS,
# then "Other" letters, whitespace, and combining marks that belong to no listed script.
SLOT_NAMES = ("",) + SCRIPTS + ("Other",)  # the letter slots are 1 .. len(SLOT_NAMES) - 1
_OTHER = len(SLOT_NAMES) - 1
_SPACE = _OTHER + 1
_MARK = _OTHER + 2
N_SLOTS = _MARK + 1
_HAN = SLOT_NAMES.index("Han")
# Variant table values: Traditional-only and Simplified-only characters.
_TRAD, _SIMP = 1, 2


@functools.lru_cache(maxsize=1)
def _all_code_points() -> str:
    points = np.arange(0x110000, dtype=np.uint32)
    points = points[(points < 0xD800) | (points >= 0xE000)]
    return points.tobytes().decode("utf-32-le")


def _code_points(text: str) -> np.ndarray:
    # surrogatepass: lone surrogates (from surrogateescape decoding) index the table like any value.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


@functools.lru_cache(maxsize=1)
def _script_table() -> np.ndarray:
    table = np.zeros(0x110000, np.uint8)
    listed = "".join(f"\\p{{Script={name}}}" for name in SCRIPTS)
    runs = regex.compile("|".join(f"(\\p{{Script={name}}}+)" for name in SCRIPTS)
                         + f"|([\\p{{L}}--[{listed}]]+)|(\\s+)|([\\p{{M}}--[{listed}]]+)", regex.V1)
    for match in runs.finditer(_all_code_points()):
        first, last = ord(match.group()[0]), ord(match.group()[-1])
        table[first:last + 1] = match.lastindex  # runs are contiguous: surrogates are not in the string
    return table


def line_script_histograms(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(characters, UTF-8 bytes) per slot of SLOT_NAMES for every line of `text.split("\\n")`,
    as two (lines, N_SLOTS) arrays computed in one pass over the whole text.

    By bytes, a Han, kana or Hangul character (one syllable, 3 bytes) weighs about as much as a
    short Latin syllable, which is fairer than characters when comparing how much of a line each
    script holds."""
    points = _code_points(text)
    codes = _slot_length_table()[points]
    newline = points == 0x0A
    cells = (np.cumsum(newline) * _SLOT_LENGTH_CODES + codes)[~newline]  # the newlines belong to no line
    n_lines = text.count("\n") + 1
    cells = np.bincount(cells, minlength=n_lines * _SLOT_LENGTH_CODES).reshape(n_lines, 4, N_SLOTS)
    return cells.sum(axis=1), _BYTES_PER_CODE_ROW @ cells


# One table lookup gives slot and UTF-8 length: code = slot + N_SLOTS * (length - 1).
_SLOT_LENGTH_CODES = 4 * N_SLOTS
_BYTES_PER_CODE_ROW = np.arange(1.0, 5.0)


@functools.lru_cache(maxsize=1)
def _slot_length_table() -> np.ndarray:
    lengths = _utf8_length(np.arange(0x110000, dtype=np.uint32))
    return (_script_table() + N_SLOTS * (lengths - 1)).astype(np.uint8)


def _utf8_length(points: np.ndarray) -> np.ndarray:
    return 1 + (points >= 0x80).astype(np.uint8) + (points >= 0x800) + (points >= 0x10000)


def char_scripts(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(slot of SLOT_NAMES, UTF-8 bytes) of every character of `text`, indexed like the str."""
    points = _code_points(text)
    return _script_table()[points], _utf8_length(points)


def script_counts(text: str) -> dict[str, int]:
    """Number of letters of each script in `text` (scripts with none omitted)."""
    counts = np.bincount(_script_table()[_code_points(text)], minlength=N_SLOTS)
    return {SLOT_NAMES[i]: int(counts[i]) for i in range(1, _OTHER + 1) if counts[i]}


def letters_only(text: str) -> str:
    """`text` with every character that is not a letter or combining mark replaced by a space."""
    points = _code_points(text)
    slots = _script_table()[points]
    keep = ((slots >= 1) & (slots <= _OTHER)) | (slots == _MARK)
    return np.where(keep, points, 0x20).astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def han_ratio(text: str) -> float:
    """Han characters / non-whitespace characters (punctuation and digits count in the denominator,
    as in ChineseWebText's "proportion of Chinese characters"). The quality chain counts the same in
    its one pass per text (`filters.chinese.text_counts`); this is the definition its tests compare with."""
    slots = _script_table()[code_points(text)]
    visible = len(text) - int(np.count_nonzero(slots == _SPACE))
    return int(np.count_nonzero(slots == _HAN)) / visible if visible else 0.0


@functools.lru_cache(maxsize=1)
def _variant_table() -> np.ndarray:
    """Characters only Traditional (resp. only Simplified) text uses, from OpenCC's tables.

    A character is a Traditional marker when t2s changes it and no Traditional character simplifies
    *to* it (so 乾, which t2s folds into 干, is a marker, but 著, a valid Simplified character too,
    is not); symmetrically for Simplified markers."""
    table = np.zeros(0x110000, np.uint8)
    chars = list(np.flatnonzero(_script_table() == _HAN).astype(np.uint32).tobytes().decode("utf-32-le"))
    # One conversion call each; newlines keep OpenCC's phrase tables out (character level only).
    simplified = to_simplified("\n".join(chars)).split("\n")
    traditional = to_traditional("\n".join(chars)).split("\n")
    simplified_image, traditional_image = set("".join(simplified)), set("".join(traditional))
    for c, s, t in zip(chars, simplified, traditional):
        if s != c and c not in simplified_image:
            table[ord(c)] = _TRAD
        elif t != c and c not in traditional_image:
            table[ord(c)] = _SIMP
    return table


def letter_class(names: tuple[str, ...]) -> str:
    """An RE2 character class (Arrow's regular-expression kernels) of every letter the table gives
    to the scripts `names`: exactly this module's letters, by code point ranges."""
    slots = [SLOT_NAMES.index(name) for name in names]
    points = np.flatnonzero(np.isin(_script_table(), slots))
    starts = np.flatnonzero(np.r_[True, np.diff(points) > 1])
    ends = np.r_[starts[1:] - 1, len(points) - 1]
    return "[" + "".join(f"\\x{{{points[a]:X}}}-\\x{{{points[b]:X}}}" for a, b in zip(starts, ends)) + "]"


def detect_han_script(text: str) -> str | None:
    """"Hans" or "Hant" by which variant's marker characters are more frequent; None when
    neither outnumbers the other (no Han text, or only characters both variants share).

    Measured on ../shared/data/text: every document of the Simplified Wikipedia (848) and
    Traditional Wikipedia (1000) samples and of THUCNews is classified correctly
    (tests/test_normalize.py)."""
    counts = np.bincount(_variant_table()[_code_points(text)], minlength=3)
    if counts[_TRAD] > counts[_SIMP]:
        return "Hant"
    if counts[_SIMP] > counts[_TRAD]:
        return "Hans"
    return None
