"""Dedup-key normalization: FineWeb's word rules, and the same after Chinese folding, at compiled speed.

The rules are the regex functions `reference_words` and `reference_chinese` (lowercase,
numbers -> "0", punctuation and whitespace -> one space, accents stripped; Chinese first goes
through OpenCC t2s, width folding and punctuation folding). Run per document they cost more than
the MinHash signature itself, so `normalize_words` and `normalize_chinese` reproduce them byte
for byte in one numba pass over the document's code points, driven by per-code-point tables that
are *derived from the reference functions* (its `str.lower`, its `regex` digit class, its word
class, NFD and mark stripping, the width and punctuation tables of `filters.normalize`), not
written by hand:

* every code point is a separator, "." (a separator that may join "3.14"), a digit, or a letter
  that becomes a fixed string (lowercased, decomposed, marks removed: "É" -> "e", "가" -> jamo);
* characters whose result depends on their neighbours (the final-sigma rule of `str.lower`, a
  lowercase that spans two characters, a decomposition that keeps a combining character) are
  "complex": a document containing one takes the reference path, as does one with lone surrogates;
* OpenCC runs only on documents in which a phrase of its dictionaries occurs (`filters.fast_t2s`);
  elsewhere t2s is a per-character table lookup, or nothing at all.

The reference functions stay the definition: the tables come from them, documents the tables
cannot express use them, and tests compare both paths on real and generated text.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from itertools import chain

import numba
import numpy as np
import regex

from filters.normalize import fold_punctuation, fold_width, to_simplified
from filters.fast_t2s import t2s_code_points

# ---------------------------------------------------------------------------------------------
# The reference rules

# datatrove's NUMBERS_PATTERN: "3.14" and "2024" -> "0" (the `regex` module runs it faster than `re`)
_NUMBERS = regex.compile(r"\d+(?:\.\d+)?")
_DIGIT = regex.compile(r"\d")  # the digit class of _NUMBERS, one character
_WORDS = re.compile(r"[^\W_]+")  # runs of letters and digits; everything else separates words


def _marks(code_points) -> re.Pattern:
    return re.compile("[" + "".join(re.escape(chr(c)) for c in code_points if unicodedata.category(chr(c)) == "Mn") + "]+")


# Nonspacing marks (category Mn), the accents NFD splits off. Two classes, because a class with
# characters beyond the BMP compiles to a linear scan (60x slower) and such characters are rare.
_MARKS_BMP = _marks(range(0x10000))
_MARKS_ASTRAL = _marks((*range(0x10000, 0x20000), *range(0xE0100, 0xE01F0)))
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    text = _MARKS_BMP.sub("", unicodedata.normalize("NFD", text))
    return _MARKS_ASTRAL.sub("", text) if _ASTRAL.search(text) else text


def reference_words(text: str) -> str:
    """FineWeb-style simplified text (datatrove's `simplify_text`): lowercase, numbers -> "0",
    punctuation and whitespace -> one space, accents stripped. The definition; slow."""
    return _strip_accents(" ".join(_WORDS.findall(_NUMBERS.sub("0", text.lower()))))


def fold_chinese(text: str) -> str:
    """Width and punctuation folding of (already Simplified) Chinese."""
    return fold_punctuation(fold_width(text))


def reference_chinese(text: str) -> str:
    """Simplified, width- and punctuation-folded Chinese, then `reference_words`. The definition; slow."""
    return reference_words(fold_chinese(to_simplified(text)))


# ---------------------------------------------------------------------------------------------
# Tables derived from the reference

# What a code point is to the reference. EXPANSION: a letter that becomes several code points.
SEPARATOR, DOT, DIGIT, LETTER, EXPANSION, COMPLEX = range(6)
_N_CODE_POINTS = 0x110000
_SURROGATES = range(0xD800, 0xE000)


class _Tables:
    """Per code point: `kind` and `value` (a letter's replacement; for an expansion, its offset
    into `expansions` << 8 | its length), once for English and once with Chinese width and
    punctuation folding applied first (`zh_kind`, `zh_value`)."""

    def __init__(self):
        self.kind = kind = np.full(_N_CODE_POINTS, SEPARATOR, np.uint8)
        self.value = value = np.zeros(_N_CODE_POINTS, np.uint32)
        expansions: list[int] = []
        kind[list(_SURROGATES)] = COMPLEX
        every_code_point = chain(range(_SURROGATES.start), range(_SURROGATES.stop, _N_CODE_POINTS))
        every_char = np.fromiter(every_code_point, np.uint32).tobytes().decode("utf-32-le")

        def classify(cp: int, lowered: str) -> None:
            """What the reference makes of `lowered`, the lowercase of code point `cp`."""
            if len(lowered) != 1:
                kind[cp] = COMPLEX
            elif _DIGIT.fullmatch(lowered):
                kind[cp] = DIGIT
            elif _WORDS.fullmatch(lowered):
                kept = _MARKS_ASTRAL.sub("", _MARKS_BMP.sub("", unicodedata.normalize("NFD", lowered)))
                # a kept combining character could be reordered against its neighbours' marks
                if not kept or any(ch.isspace() or unicodedata.combining(ch) for ch in kept):
                    kind[cp] = COMPLEX
                elif len(kept) == 1:
                    kind[cp], value[cp] = LETTER, ord(kept)
                else:
                    kind[cp], value[cp] = EXPANSION, len(expansions) << 8 | len(kept)
                    expansions.extend(map(ord, kept))
            else:
                kind[cp] = SEPARATOR

        # Uncased characters are their own lowercase; a word character NFD leaves alone is itself.
        words = np.array([ord(m.group()) for m in re.finditer(r"[^\W_]", every_char)], np.uint32)
        kind[words], value[words] = LETTER, words
        for cp in words.tolist():
            ch = chr(cp)
            if unicodedata.combining(ch) or not unicodedata.is_normalized("NFD", ch):
                classify(cp, ch)
        kind[[ord(m.group()) for m in _DIGIT.finditer(every_char)]] = DIGIT
        for cp in _cased(every_char).tolist():
            ch = chr(cp)
            lowered = ch.lower()
            # str.lower has one context rule (final sigma): a character lowered differently next
            # to a letter is complex
            if {lowered, ("a" + ch).lower()[1:], ("a" + ch + "a").lower()[1:-1]} != {lowered}:
                kind[cp] = COMPLEX
            else:
                classify(cp, lowered)
        kind[ord(".")] = DOT
        self.expansions = np.array(expansions or [0], np.uint32)
        self.max_expansion = max([1] + [v & 0xFF for v in value[kind == EXPANSION].tolist()])
        self.zh_kind, self.zh_value = self._fold_chinese_first()

    def _fold_chinese_first(self) -> tuple[np.ndarray, np.ndarray]:
        kind, value = self.kind.copy(), self.value.copy()
        # the foldings are BMP only; one call for all, "\n" (which folds to itself) between them
        bmp = [chr(cp) for cp in chain(range(_SURROGATES.start), range(_SURROGATES.stop, 0x10000)) if cp != 10]
        folded_bmp = fold_chinese("\n".join(bmp)).split("\n")
        assert len(folded_bmp) == len(bmp), "a folding removed or produced a newline"
        for ch, folded in zip(bmp, folded_bmp):
            if folded == ch:
                continue
            cp = ord(ch)
            if len(folded) == 1:
                kind[cp], value[cp] = self.kind[ord(folded)], self.value[ord(folded)]
            elif len(folded) > 1 and all(self.kind[ord(c)] in (SEPARATOR, DOT) for c in folded):
                kind[cp] = SEPARATOR  # "..." from "…": its dots never stand between two digits
            else:
                kind[cp] = COMPLEX
        return kind, value


def _cased(every_char: str) -> np.ndarray:
    """Code points whose lowercase differs from them (one bulk str.lower, compared position by
    position; U+0130 is the one character whose lowercase is two characters long)."""
    wide = "\u0130"
    rest = every_char.replace(wide, "")
    before = np.frombuffer(rest.encode("utf-32-le"), np.uint32)
    after = np.frombuffer(rest.lower().encode("utf-32-le"), np.uint32)
    return np.append(before[before != after], ord(wide))


_TABLES: _Tables | None = None
_TABLES_LOCK = threading.Lock()


def _tables() -> _Tables:
    """Built once per process, on first use; thread-safe (Beam runs tasks in threads)."""
    global _TABLES
    if _TABLES is None:
        with _TABLES_LOCK:
            if _TABLES is None:
                _TABLES = _Tables()
    return _TABLES


# ---------------------------------------------------------------------------------------------
# The compiled pass


@numba.njit(cache=True, nogil=True)
def _simplify_kernel(cps, kind, value, expansions, out):
    """Write the normalized text's code points into `out`; return how many, or -1 for a complex
    character. Digits: a run, optionally "." and a second run, becomes one "0" inside the word."""
    n_in = cps.shape[0]
    n = 0
    space_pending = False
    i = 0
    while i < n_in:
        cp = cps[i]
        k = kind[cp]
        if k <= DOT:  # SEPARATOR or DOT
            if n > 0:
                space_pending = True
            i += 1
            continue
        if k == COMPLEX:
            return -1
        if space_pending:
            out[n] = 32
            n += 1
            space_pending = False
        i += 1
        if k == LETTER:
            out[n] = value[cp]
            n += 1
        elif k == EXPANSION:
            offset = value[cp] >> 8
            for j in range(value[cp] & 0xFF):
                out[n] = expansions[offset + j]
                n += 1
        else:  # DIGIT
            out[n] = 48
            n += 1
            while i < n_in and kind[cps[i]] == DIGIT:
                i += 1
            if i + 1 < n_in and kind[cps[i]] == DOT and kind[cps[i + 1]] == DIGIT:
                i += 2
                while i < n_in and kind[cps[i]] == DIGIT:
                    i += 1
    return n


def code_points(text: str) -> np.ndarray | None:
    """The text as uint8 (ASCII) or uint32 code points; None when it holds lone surrogates."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    try:
        return np.frombuffer(text.encode("utf-32-le"), np.uint32)
    except UnicodeEncodeError:
        return None


def _simplify(cps: np.ndarray | None, chinese: bool) -> str | None:
    if cps is None:
        return None
    t = _tables()
    ascii_only = cps.dtype == np.uint8  # ASCII maps to at most one ASCII character
    out = np.empty(len(cps) * (1 if ascii_only else t.max_expansion), cps.dtype)
    n = _simplify_kernel(cps, t.zh_kind if chinese else t.kind, t.zh_value if chinese else t.value, t.expansions, out)
    if n < 0:
        return None
    return out[:n].tobytes().decode("ascii" if ascii_only else "utf-32-le")


def normalize_words(text: str) -> str:
    """`reference_words(text)`, computed in one compiled pass."""
    result = _simplify(code_points(text), chinese=False)
    return reference_words(text) if result is None else result


@numba.njit(cache=True, nogil=True)
def _simplify_lines_kernel(cps, ends, kind, value, expansions, out, out_ends):
    """`_simplify_kernel` on each line (code points up to ends[i], the next line starts after its
    "\n"), outputs back to back; out_ends[i] = where line i's output ends, -1 for a complex line."""
    start = 0
    n = 0
    for i in range(ends.shape[0]):
        m = _simplify_kernel(cps[start:ends[i]], kind, value, expansions, out[n:])
        if m >= 0:
            n += m
        out_ends[i] = n if m >= 0 else -1
        start = ends[i] + 1
    return n


def normalize_word_lines(text: str) -> list[str]:
    """`normalize_words` of each of the text's "\n"-separated lines, in one compiled pass."""
    cps = code_points(text)
    if cps is None:  # lone surrogates: line by line
        return [normalize_words(line) for line in text.split("\n")]
    t = _tables()
    ascii_only = cps.dtype == np.uint8
    ends = np.append(np.flatnonzero(cps == 10), len(cps))
    out = np.empty(len(cps) * (1 if ascii_only else t.max_expansion), cps.dtype)
    out_ends = np.empty(len(ends), np.int64)
    n = _simplify_lines_kernel(cps, ends, t.kind, t.value, t.expansions, out, out_ends)
    joined = out[:n].tobytes().decode("ascii" if ascii_only else "utf-32-le")
    result, start, lines = [], 0, None
    for i, end in enumerate(out_ends.tolist()):
        if end < 0:  # a complex character: this line takes the reference path
            lines = lines or text.split("\n")
            result.append(reference_words(lines[i]))
        else:
            result.append(joined[start:end])
            start = end
    return result


def normalize_chinese(text: str) -> str:
    """`reference_chinese(text)`: t2s (OpenCC only for phrases), then one compiled pass."""
    cps = code_points(text)
    simplified = None if cps is None else t2s_code_points(cps)
    if simplified is None:
        simplified = code_points(to_simplified(text))
    result = _simplify(simplified, chinese=True)
    return reference_chinese(text) if result is None else result
