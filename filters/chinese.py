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
from typing import ClassVar

import numba

from filters.blocklist import WordMatcher
from filters.english import FineWebQuality, GopherQuality, GopherRepetition
from filters.english import TERMINAL_PUNCTUATION
from filters.repetition import (Doc, Rejection, RuleSet, Signals, char_ngram_duplicate_fraction, code_points,
                                encodable)
from filters.scripts import han_ratio

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


def sentence_line_fraction(lines: list[str], tail: int = 10) -> float:
    """Share of lines that end like a sentence: terminal punctuation among their last `tail`
    characters, so that closing quotes and a byline or credit after the final full stop count
    (。” 。(张 哲) 。本报记者某某摄)."""
    ends = sum(not TERMINAL_PUNCTUATION.isdisjoint(line.rstrip()[-tail:]) for line in lines)
    return ends / len(lines) if lines else 0.0


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
        lines = doc.nonempty_lines
        prose = signals["sentence_line_frac"] = sentence_line_fraction(lines)
        if self.min_chars:
            minimum = self.min_chars - (self.min_chars - min(self.min_chars_prose, self.min_chars)) * prose
            if n_chars < minimum:
                return self.reject("min_chars", n_chars)
        han = signals["han_ratio"] = han_ratio(text)
        if self.min_han_ratio and han < self.min_han_ratio:
            return self.reject("han_ratio", han)
        mean = signals["mean_line_length"] = sum(map(len, lines)) / len(lines) if lines else 0.0
        if self.min_mean_line_length and mean < self.min_mean_line_length:
            return self.reject("mean_line_length", mean)
        dup = signals["char_ngram_dup_frac"] = char_ngram_duplicate_fraction(
            doc.without_longest_repeat(self.char_ngram, self.repeat_block_min_frac), self.char_ngram)
        if self.max_char_ngram_dup_frac and dup > self.max_char_ngram_dup_frac:
            return self.reject("char_ngram_repetition", dup)
        return None


_PINYIN_NOTE = re.compile("[\u4e00-\u9fff][(\uff08][a-z\u00e0-\u00fc\u0101-\u01dc]{1,6}[1-5]?[)\uff09]")
_PINYIN_NOTE_START = re.compile("[(\uff08][a-z\u00e0-\u00fc\u0101-\u01dc]")  # in every note; found in 2% of texts
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
        # `in` first: a bracket is a plain character search, the pattern's class is tried at every position
        noted = ("(" in text or "\uff08" in text) and _PINYIN_NOTE_START.search(text)
        notes = len(_PINYIN_NOTE.findall(text)) if noted else 0
        density = signals["pinyin_notes_per_1k_chars"] = 1000 * notes / max(len(doc.text), 1)
        if self.max_pinyin_notes_per_1k_chars is not None and notes >= self.min_pinyin_notes \
                and density > self.max_pinyin_notes_per_1k_chars:
            return self.reject("pinyin_notes", density)
        lines = doc.nonempty_lines
        if ";" in text or "{" in text or "}" in text:  # 3% of texts: only they can have a line ending like code
            code = sum(1 for line in lines if _CODE_LINE_START.match(line) or _CODE_LINE_END.search(line))
        else:
            code = sum(1 for line in lines if _CODE_LINE_START.match(line))
        frac = signals["code_line_frac"] = code / len(lines) if lines else 0.0
        if self.max_code_line_frac is not None and code >= self.min_code_lines and frac > self.max_code_line_frac:
            return self.reject("code_lines", frac)
        return None




@numba.njit(cache=True, nogil=True)
def _long_digit_run_chars(points, min_run_length):
    """Characters in runs of at least `min_run_length` ASCII or full-width digits."""
    chars, run = 0, 0
    for p in points:
        if 0x30 <= p <= 0x39 or 0xFF10 <= p <= 0xFF19:
            run += 1
        else:
            chars += run if run >= min_run_length else 0
            run = 0
    return chars + (run if run >= min_run_length else 0)


@dataclass
class LongDigitRuns(RuleSet):
    """Share of characters in long runs of digits: phone and QQ-number lists, lottery draws,
    tracking codes. A run is at least `min_run_length` consecutive digits (8: dates written
    20210101 are the longest ordinary run; Chinese mobile numbers have 11 digits)."""

    name: ClassVar[str] = "zh"
    min_run_length: int = 8
    max_digit_run_frac: float | None = 0.1

    def signal_types(self) -> dict[str, type]:
        return {"digit_run_frac": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        run_chars = int(_long_digit_run_chars(code_points(doc.text), self.min_run_length))
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
