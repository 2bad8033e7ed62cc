"""Chinese quality rule sets: ChineseWebText's rules, long digit runs, spam density, and FineWeb-2's
`cmn_Hani` thresholds for the Gopher and FineWeb rules.

Words are jieba's, as datatrove's `zho_Hani`/`cmn_Hani` tokenizer (spaCy's Chinese tokenizer with
the jieba segmenter) produces them. jieba itself runs at about 1 MB/s; jieba-rs (`rjieba`) cuts the
same dictionary with the same HMM at 15-25 MB/s, but splits runs of Latin letters and digits
differently ("2.4km" where jieba gives "2.4" "km"), so tokens without Han characters are re-cut by
jieba itself (cached: they repeat). On ../shared/data's 2,632 Chinese documents the result equals
jieba's on all but one document (one HMM merge of two characters).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import ClassVar, NamedTuple

import numba
import numpy as np

from filters.blocklist import WordMatcher
from filters.english import FineWebQuality, GopherQuality, GopherRepetition
from filters.english import TERMINAL_PUNCTUATION
from filters.repetition import (Doc, Rejection, RuleSet, Signals, char_ngram_duplicate_fraction, code_points,
                                encodable)
from filters.scripts import _HAN as _HAN_SLOT, _SPACE as _SPACE_SLOT, _script_table

_HAN = re.compile("[\u4e00-\u9fd5]")  # the Han range jieba's HMM segmenter works on
# jieba's own patterns (jieba/__init__.py re_han_default, jieba/finalseg re_skip): the blocks it cuts
# with its dictionary, and how its HMM step splits a block without Han characters.
_JIEBA_BLOCK = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)")
_JIEBA_HMM_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")


class _JiebaTokens(dict):
    """jieba-rs token -> the tokens jieba gives for it (stripped; whitespace tokens drop out).

    A token without Han characters is cut as jieba cuts it (`jieba_non_han`): jieba itself costs
    some 20 us a call, and nearly every such token takes a path that two regular expressions
    reproduce."""

    limit = 1_000_000

    def __init__(self, dictionary_pairs: re.Pattern):
        super().__init__()
        self.dictionary_pairs = dictionary_pairs

    def __missing__(self, token: str) -> tuple[str, ...]:
        if len(self) >= self.limit:
            self.clear()
        stripped = token.strip()
        if len(stripped) > 1 and not _HAN.search(stripped):
            tokens = self.jieba_non_han(stripped)
        else:
            tokens = (stripped,) if stripped else ()
        self[token] = tokens
        return tokens

    def jieba_non_han(self, text: str) -> tuple[str, ...]:
        """`jieba.lcut(text)` stripped, without its empty words, for a text without Han characters.

        jieba splits the text into blocks of `_JIEBA_BLOCK`'s characters and single other
        characters. A block is cut along its dictionary's DAG; when no two adjacent characters of
        the block start a dictionary word (`dictionary_pairs`), every step of the DAG is one
        character, so the whole block goes to the HMM step, which splits text without Han
        characters at `_JIEBA_HMM_SKIP`. Other blocks ("QQ", "C++") go to jieba."""
        words: list[str] = []
        for i, part in enumerate(_JIEBA_BLOCK.split(text)):
            if not part:
                continue
            if not i % 2:  # between blocks: one word a character
                words += [c for c in part if not c.isspace()]
            elif self.dictionary_pairs.search(part) is None:
                words += filter(None, _JIEBA_HMM_SKIP.split(part))
            else:
                import jieba

                words += jieba.lcut(part)  # a block alone is cut as inside the text; it holds no whitespace
        return tuple(words)


def _dictionary_pairs(frequencies: dict[str, int]) -> re.Pattern:
    """The two-character entries (words and word prefixes) of jieba's dictionary that a block
    without Han characters can hold."""
    pairs = sorted(w for w in frequencies if len(w) == 2 and _JIEBA_BLOCK.fullmatch(w) and not _HAN.search(w))
    return re.compile("|".join(map(re.escape, pairs)) or r"(?!x)x")


@functools.lru_cache(maxsize=1)
def _segmenter():
    import jieba
    import rjieba

    jieba.setLogLevel(60)  # its "Building prefix dict" chatter on every worker
    jieba.initialize()
    return rjieba.cut, _JiebaTokens(_dictionary_pairs(jieba.dt.FREQ))


def chinese_words(text: str) -> list[str]:
    """The words datatrove's `split_into_words(text, "zho_Hani")` returns (jieba, HMM on)."""
    cut, fix = _segmenter()
    return list(chain.from_iterable(map(fix.__getitem__, cut(encodable(text)))))


# ---------------------------------------------------------------------------------------------
# FineWeb-2's Chinese thresholds (huggingface/fineweb-2, configs/cmn_Hani.yml and the filtering
# step of fineweb-2-pipeline.py), applied to jieba words: the English classes' rules and their other
# defaults. Two deviations, measured on ../shared/data/text (tests/test_quality_real_data.py):
# - the line rules (FineWeb's line punctuation, Gopher's bullet and ellipsis lines) skip one-line
#   documents: a paragraph is not a page of lines, and FineWeb-2's 0.106 would reject every
#   one-line article that ends in a quote, a bracket or "(完)" (58% of THUCNews, 15% of Chinese
#   Wikipedia paragraphs), Gopher's ellipsis rule every paragraph cut off with "……";
# - the minimum share of words with a letter is 0.6, not 0.735: jieba makes every punctuation
#   mark and number a word, and at 0.735 14% of Chinese Wikipedia paragraphs fail, as do some
#   web pages of the ChineseWebText sample whatever their quality (1st percentile there: 0.61).

CMN_HANI_STOP_WORDS = ["的", "年", "在", "月", "是", "和", "日", "了", "於", "·", "為", "有", "被", "人", "中",
                       "为", "他", "與", "後", "也", "而", "由"]


@dataclass
class ChineseGopherRepetition(GopherRepetition):
    """FineWeb-2's thresholds, measured after removing the page's longest duplicated block, as
    ChineseWebText's internal duplication is (see there): on THUCNews, 4% of the articles failed
    only on a lead paragraph repeated or the article pasted twice."""

    name: ClassVar[str] = "zh_gopher_repetition"
    repeat_char_ngram: int = 13  # the block removed is a run of repeated character n-grams (0: none)
    repeat_block_min_frac: float = 0.25  # ... of at least this share of the text (see ChineseWebText)
    dup_line_frac: float | None = 0.287
    dup_para_frac: float | None = 0  # FineWeb-2 disables the paragraph and line-character rules
    dup_line_char_frac: float | None = 0
    dup_para_char_frac: float | None = 0
    top_ngram_char_frac: dict[int, float] = field(default_factory=lambda: {2: 0.256, 3: 0.201, 4: 0.171})
    dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.198, 6: 0.182, 7: 0.167, 8: 0.154, 9: 0.14, 10: 0.127})

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        if self.repeat_char_ngram:
            text = doc.without_longest_repeat(self.repeat_char_ngram, self.repeat_block_min_frac)
            if text != doc.text:
                doc = Doc(text, doc.tokenize, doc.url, doc.count_words)
        return super().judge(doc, signals)


@dataclass
class ChineseFineWebQuality(FineWebQuality):
    name: ClassVar[str] = "zh_fineweb"
    line_punct_thr: float = 0.106
    short_line_thr: float = 999  # FineWeb-2 disables the short-line rule
    line_punct_min_lines: int = 2  # not FineWeb-2's (see above)
    char_duplicates_ratio: float = 0.1
    new_line_ratio: float = 0.178


@dataclass
class ChineseGopherQuality(GopherQuality):
    name: ClassVar[str] = "zh_gopher_quality"
    min_doc_words: int | None = 25  # FineWeb-2: 50; one-paragraph news of 60-99 characters has 35-49 (THUCNews)
    min_avg_word_length: float | None = 1
    max_avg_word_length: float | None = 5
    max_non_alpha_words_ratio: float | None = 0.6  # FineWeb-2: 0.735 (see above)
    line_rules_min_lines: int = 2  # not FineWeb-2's (see above)
    stop_words: list[str] = field(default_factory=lambda: list(CMN_HANI_STOP_WORDS))


# ---------------------------------------------------------------------------------------------
# ChineseWebText (Chen et al. 2023, arXiv 2311.01149, section 3.1 "preparation")


# Per character of a text (`_character_flags`): what the counts of `_text_counts` ask of it.
_WHITESPACE, _TERMINAL, _CODE_START, _CODE_END, _PINYIN_LETTER, _HAN_LETTER, _SCRIPT_SPACE = 1, 2, 4, 8, 16, 32, 64
_SENTENCE_TAIL = 10  # a line ends like a sentence with terminal punctuation among its last 10 characters
_LONGEST_DIGIT_RUN = 64  # `LongDigitRuns.min_run_length` at most this: runs are counted by length up to it


@functools.lru_cache(maxsize=1)
def _character_flags() -> np.ndarray:
    script = _script_table()
    flags = np.where(script == _HAN_SLOT, _HAN_LETTER, 0).astype(np.uint8)
    flags[script == _SPACE_SLOT] |= _SCRIPT_SPACE  # whitespace as `filters.scripts.han_ratio` counts it
    every = np.arange(0x110000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags[[m.start() for m in re.finditer(r"\s", every)]] |= _WHITESPACE  # re's \s is str.isspace (strip, rstrip)
    flags[list(map(ord, TERMINAL_PUNCTUATION))] |= _TERMINAL
    flags[list(map(ord, "{}/*#ifdcprvlw"))] |= _CODE_START  # the first characters of _CODE_LINE_START's alternatives
    flags[list(map(ord, ";{}"))] |= _CODE_END
    flags[[m.start() for m in re.finditer("[a-z\u00e0-\u00fc\u0101-\u01dc]", every)]] |= _PINYIN_LETTER
    return flags


class TextCounts(NamedTuple):
    """What ChineseWebText, LongDigitRuns and ChineseNoise count in a text, from one compiled pass
    over its code points (where each rule set's own passes and regular expressions cost more)."""

    han: int  # Han letters (`filters.scripts.han_ratio`)
    visible: int  # characters that are not whitespace (the same)
    lines: int  # non-empty lines (`Doc.nonempty_lines`)
    line_chars: int  # their characters
    sentence_lines: int  # those with terminal punctuation among the last 10 characters before trailing whitespace
    code_start_lines: int  # those whose first character after whitespace begins a `_CODE_LINE_START` alternative
    code_end_chars: bool  # whether the text holds ; { or } (a `_CODE_LINE_END` needs one)
    pinyin_notes: int  # `len(_PINYIN_NOTE.findall(text))`
    digit_run_chars: np.ndarray  # [k]: characters in runs of at least k ASCII or full-width digits


@functools.lru_cache(maxsize=2)
def text_counts(text: str) -> TextCounts:
    """The counts of `text`, cached for the last texts: the rule sets of a chain ask in turn."""
    return TextCounts._make(_text_counts(code_points(text), _character_flags(), _SENTENCE_TAIL, _LONGEST_DIGIT_RUN))


@numba.njit(cache=True, nogil=True)
def _text_counts(points, flags, tail, longest_run):
    han = space = lines = line_chars = sentence_lines = code_start_lines = notes = run = 0
    code_end = False
    runs = np.zeros(longest_run + 1, np.int64)  # characters in runs of exactly k digits, the last: at least
    n = points.shape[0]
    line_start, first, last, free = 0, -1, -1, 0  # free: where the next pinyin note may begin (findall)
    for i in range(n + 1):
        p = points[i] if i < n else 10
        if 0x30 <= p <= 0x39 or 0xFF10 <= p <= 0xFF19:
            run += 1
        elif run:
            runs[min(run, longest_run)] += run
            run = 0
        if p == 10:  # a line ends: "\n" (str.split("\n")) or the text's end
            space += i < n
            if first >= 0:
                lines += 1
                line_chars += i - line_start
                for j in range(max(line_start, last - tail + 1), last + 1):
                    if flags[points[j]] & _TERMINAL:
                        sentence_lines += 1
                        break
                code_start_lines += (flags[points[first]] & _CODE_START) != 0
            line_start, first, last = i + 1, -1, -1
            continue
        f = flags[p]
        han += (f & _HAN_LETTER) != 0
        space += (f & _SCRIPT_SPACE) != 0
        if not f & _WHITESPACE:
            if first < 0:
                first = i
            last = i
        code_end |= (f & _CODE_END) != 0
        if i >= free and 0x4E00 <= p <= 0x9FFF and i + 1 < n and (points[i + 1] == 0x28 or points[i + 1] == 0xFF08):
            # _PINYIN_NOTE at i: a Han character, "(", 1-6 letters, an optional tone 1-5, ")"
            j = i + 2
            while j < n and j < i + 8 and flags[points[j]] & _PINYIN_LETTER:
                j += 1
            if j > i + 2 and j < n and 0x31 <= points[j] <= 0x35:
                j += 1
            if j > i + 2 and j < n and (points[j] == 0x29 or points[j] == 0xFF09):
                notes += 1
                free = j + 1
    for k in range(longest_run - 1, -1, -1):
        runs[k] += runs[k + 1]
    return han, n - space, lines, line_chars, sentence_lines, code_start_lines, code_end, notes, runs


def sentence_line_fraction(text: str) -> float:
    """Share of non-empty lines that end like a sentence: terminal punctuation among their last
    10 characters, so that closing quotes and a byline or credit after the final full stop count
    (。” 。(张 哲) 。本报记者某某摄)."""
    counts = text_counts(text)
    return counts.sentence_lines / counts.lines if counts.lines else 0.0


@dataclass
class ChineseWebText(RuleSet):
    """Length, share of Han characters, mean line length, and characters in repeated character
    13-grams ("internal duplication").

    Two changes to ChineseWebText's rules, measured on the labelled sets of bench/quality_labelled.py:
    - the minimum length scales with the page's structure: `min_chars` for a page of lines that do
      not end like sentences (menus, lists, link farms), down to `min_chars_prose` for one whose
      lines all do (linear in the share): 7% of THUCNews articles are one clean paragraph of 60-199
      characters, while the short spam pages are headers and menus;
    - internal duplication is measured after removing the page's longest duplicated block when it
      is a quarter of the page or more (`without_longest_repeat`): an article pasted twice is not a
      spam template (4% of THUCNews articles failed on that alone)."""

    name: ClassVar[str] = "zh"
    min_chars: int | None = 200
    min_chars_prose: int = 50
    min_han_ratio: float | None = 0.3  # Han / non-whitespace characters (filters.scripts.han_ratio)
    min_mean_line_length: float | None = 10  # characters per non-empty line
    char_ngram: int = 13
    max_char_ngram_dup_frac: float | None = 0.5
    # The block removed before measuring: at least this share of the text. Measured: THUCNews
    # articles that failed repetition rules had a block of 0.48-0.50 (pasted twice), the injected
    # spam pages of the ChineseWebText sample 0.10-0.18.
    repeat_block_min_frac: float = 0.25

    def signal_types(self) -> dict[str, type]:
        return {"n_chars": int, "sentence_line_frac": float, "han_ratio": float, "mean_line_length": float,
                "char_ngram_dup_frac": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        text = doc.text
        n_chars = signals["n_chars"] = len(text)
        counts = text_counts(text)
        prose = signals["sentence_line_frac"] = sentence_line_fraction(text)
        if self.min_chars:
            minimum = self.min_chars - (self.min_chars - min(self.min_chars_prose, self.min_chars)) * prose
            if n_chars < minimum:
                return self.reject("min_chars", n_chars)
        han = signals["han_ratio"] = counts.han / counts.visible if counts.visible else 0.0
        if self.min_han_ratio and han < self.min_han_ratio:
            return self.reject("han_ratio", han)
        mean = signals["mean_line_length"] = counts.line_chars / counts.lines if counts.lines else 0.0
        if self.min_mean_line_length and mean < self.min_mean_line_length:
            return self.reject("mean_line_length", mean)
        dup = signals["char_ngram_dup_frac"] = char_ngram_duplicate_fraction(
            doc.without_longest_repeat(self.char_ngram, self.repeat_block_min_frac), self.char_ngram)
        if self.max_char_ngram_dup_frac and dup > self.max_char_ngram_dup_frac:
            return self.reject("char_ngram_repetition", dup)
        return None


# What `_text_counts` counts as pinyin notes (tests compare the two):
_PINYIN_NOTE = re.compile("[\u4e00-\u9fff][(\uff08][a-z\u00e0-\u00fc\u0101-\u01dc]{1,6}[1-5]?[)\uff09]")
# A line of code starts like one or ends in ; { } (a comment aside). Two patterns, matched at the
# start and searched from the first ; { }: as one alternation, the start was tried at every character.
_CODE_LINE_START = re.compile(r"\s*(?:[{}]|//|/\*|\*/|#include|#define|import |from \S+ import|def |class |public |"
                              r"private |function |return\b|var |let |const |if ?\(|for ?\(|while ?\()")
_CODE_LINE_END = re.compile(r"[;{}]\s*(?://.*)?$")


@dataclass
class ChineseNoise(RuleSet):
    """Kinds of Chinese pages ChineseWebText's authors label dirty that no length, script or
    repetition rule sees: characters annotated with their pinyin one by one (烟(yan)台(tai), a
    children's-text and SEO-spinner pattern) and source code with Chinese comments. A news report
    may gloss one name with pinyin, and an article may quote a line of code, so both rules ask for
    a density."""

    name: ClassVar[str] = "zh"
    max_pinyin_notes_per_1k_chars: float | None = 20.0  # clean Wikipedia/news here: at most 5.8 (and < 3 notes)
    min_pinyin_notes: int = 3
    max_code_line_frac: float | None = 0.3
    min_code_lines: int = 3

    def signal_types(self) -> dict[str, type]:
        return {"pinyin_notes_per_1k_chars": float, "code_line_frac": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        text = doc.text
        counts = text_counts(text)
        density = signals["pinyin_notes_per_1k_chars"] = 1000 * counts.pinyin_notes / max(len(doc.text), 1)
        if self.max_pinyin_notes_per_1k_chars is not None and counts.pinyin_notes >= self.min_pinyin_notes \
                and density > self.max_pinyin_notes_per_1k_chars:
            return self.reject("pinyin_notes", density)
        # the patterns run only on texts that may match them: ; { } (3% of texts), a line starting like code
        if counts.code_end_chars:
            code = sum(1 for line in doc.nonempty_lines if _CODE_LINE_START.match(line) or _CODE_LINE_END.search(line))
        elif counts.code_start_lines:
            code = sum(1 for line in doc.nonempty_lines if _CODE_LINE_START.match(line))
        else:
            code = 0
        frac = signals["code_line_frac"] = code / counts.lines if counts.lines else 0.0
        if self.max_code_line_frac is not None and code >= self.min_code_lines and frac > self.max_code_line_frac:
            return self.reject("code_lines", frac)
        return None


@dataclass
class LongDigitRuns(RuleSet):
    """Share of characters in long runs of digits: phone and QQ-number lists, lottery draws,
    tracking codes. A run is at least `min_run_length` consecutive digits (8: dates written
    20210101 are the longest ordinary run; Chinese mobile numbers have 11 digits)."""

    name: ClassVar[str] = "zh"
    min_run_length: int = 8
    max_digit_run_frac: float | None = 0.1

    def __post_init__(self):
        if not 0 <= self.min_run_length <= _LONGEST_DIGIT_RUN:
            raise ValueError(f"min_run_length: expected 0 to {_LONGEST_DIGIT_RUN}, got {self.min_run_length}")

    def signal_types(self) -> dict[str, type]:
        return {"digit_run_frac": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        run_chars = int(text_counts(doc.text).digit_run_chars[self.min_run_length])
        frac = signals["digit_run_frac"] = run_chars / max(len(doc.text), 1)
        if self.max_digit_run_frac and frac > self.max_digit_run_frac:
            return self.reject("digit_run", frac)
        return None


@dataclass
class SpamDensity(RuleSet):
    """Gambling, lottery, casino, adult and SEO advertising, as crawled Chinese pages carry it
    (often injected into copied articles, a site name two or three times): a document with at
    least `min_hits` lexicon matches, at least `min_hits_per_1k_chars` of them per 1,000
    characters, is dropped. `terms` are the lexicon's entries (filters/data/zh_spam_terms.txt by
    default, which the stage reads)."""

    name: ClassVar[str] = "zh"
    terms: list[str] = field(default_factory=list)
    min_hits_per_1k_chars: float | None = 0.5
    min_hits: int = 2  # a single mention (a news item about a lottery draw) never rejects

    def __post_init__(self):
        self._matcher = WordMatcher(self.terms)

    def signal_types(self) -> dict[str, type]:
        return {"spam_hits": int, "spam_hits_per_1k_chars": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        hits = signals["spam_hits"] = self._matcher.count(doc.text)
        density = signals["spam_hits_per_1k_chars"] = 1000 * hits / max(len(doc.text), 1)
        if self.min_hits_per_1k_chars is not None and hits >= self.min_hits and density >= self.min_hits_per_1k_chars:
            return self.reject("spam_density", density)
        return None
