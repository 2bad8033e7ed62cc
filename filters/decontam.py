"""Benchmark contamination: which documents share an n-gram with a benchmark's test items.

English: word 13-grams (GPT-3's rule); Chinese: character n-grams (n chosen by
bench/decontam.py: the smallest n whose false positives on clean news stay under 0.1%, see
docs/benchmarks.md). Text is normalized exactly as dedup normalizes it (filters/fast_normalize.py:
lowercase, numbers -> 0, punctuation and whitespace folded, Traditional -> Simplified), and
n-grams are hashed by the same compiled kernel as dedup's shingles (64-bit), so an item is found
whatever its punctuation, width, case or script in the page.

A page is shingled in its own language's mode, and also in the other one, so an item is found
whatever the page's majority language (an exam-prep page labelled zh quoting MMLU, an English page
quoting C-Eval): a Chinese page is read as words too, and an English page that holds Han characters
is read as Chinese characters, only where its n-grams hold as many Han characters (numerals included:
its digits count) as the Han-poorest item cut as characters has in its best n-gram, and at least one
(see `_Pass.han`, `_han_bound`). Words of a text
holding CJK characters are folded as Chinese is (Traditional -> Simplified, width, punctuation) and
their Han stretches split from the letters and digits they touch (`_word_string`), so an English
item's Chinese words meet a page's however the item joins them to its English ("the word'关系'",
"我们，你们") and whichever script the langid stage left the page in. An item's language (`item_lang`,
or the benchmark's `lang`) decides how the item is cut; an English item that quotes Chinese is also
cut into the Chinese it quotes (its stretches of `zh_min_tokens`-grams as Han as a Chinese item's indexed ones,
without the English around them), each cut as a Chinese item would be, so a page quoting the Chinese
alone is found. One with only a few Han characters (a word) is found in a Chinese page by its word
n-grams, the word among them: indexing its mostly-Latin character n-grams would match unrelated
pages.

An item shorter than one n-gram cannot share one: items of at least `min_tokens` tokens are
indexed whole as `min_tokens`-grams (a second, shorter pass over documents, run only if such items
exist), unless a Chinese one is mostly numerals (a date, a figure and its unit: a fact many pages
state); shorter ones are counted as too short to detect and reported.

The index (a sorted array of n-gram hashes per pass plus, for each hash, the items that hold it)
is built from the benchmark files once per worker process: benchmarks are small next to a corpus,
and the cost of a document is its own n-grams (one presence-table lookup each), plus those of its
reading in the other script, whatever the number of benchmarks.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import numba
import numpy as np

from filters.fast_normalize import normalize_chinese, normalize_words
from filters.minhash import Shingling, is_chinese, shingle_batch
from filters.scripts import script_counts


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str  # the name the config gives the file
    index: int      # the item's position in its file
    text: str
    lang: str       # "en" or "zh": decides word or character n-grams


@dataclass
class _Pass:
    """One n-gram size per language: the sorted hashes of every item n-gram, and their items."""

    en_n: int
    zh_n: int
    words: bool = False  # holds word n-grams (English items)
    # The fewest Han characters (at least 1) of the Han-richest indexed n-gram of any item cut as
    # characters (None: none is): an English page's character n-grams with fewer are not looked up.
    han: int | None = None
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted, unique
    owners: list[tuple[int, ...]] = field(default_factory=list)  # per hash: item numbers
    # A direct-mapped presence table on the low bits of the hashes (~3% full): almost every document
    # n-gram is ruled out by one lookup in a few MB, and only the rest is searched in `hashes`
    # (a binary search per n-gram cost 5x the n-gram hashing itself).
    present: np.ndarray = field(default_factory=lambda: np.zeros(1, bool))

    def set_hashes(self, hashes: np.ndarray, owners: list[tuple[int, ...]]) -> None:
        self.hashes, self.owners = hashes, owners
        size = 1 << int(np.clip(np.ceil(np.log2(max(len(hashes), 1) * 32)), 16, 28))
        self.present = np.zeros(size, bool)
        self.present[(hashes & np.uint64(size - 1)).astype(np.int64)] = True

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions into `hashes` of the query that are indexed, their index in `self.hashes`)."""
        mask = np.uint64(len(self.present) - 1)
        maybe = np.flatnonzero(self.present[(hashes & mask).astype(np.int64)])
        pos = np.searchsorted(self.hashes, hashes[maybe])
        pos[pos == len(self.hashes)] = 0
        hit = self.hashes[pos] == hashes[maybe]
        return maybe[hit], pos[hit]

    def shingles(self, tokens: list[tuple[str, bool]]) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, document index) of every n-gram of normalized token strings, documents in order
        and each document's n-grams in text order."""
        parts = []
        for word_mode, n in ((True, self.en_n), (False, self.zh_n)):
            idx = [i for i, (_, w) in enumerate(tokens) if w == word_mode]
            if idx:
                batch = shingle_batch([tokens[i][0] for i in idx], word_mode, n)
                parts.append((batch.hashes64, np.asarray(idx, np.int64)[batch.doc]))
        if not parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        hashes, docs = np.concatenate([h for h, _ in parts]), np.concatenate([d for _, d in parts])
        order = np.argsort(docs, kind="stable")
        return hashes[order], docs[order]


# Dedup's normalization folds every number to "0", which in Chinese turns dates and figures into
# "0年0月0日至0年0月0日", found on any news page. Here digits become the Chinese numerals first, so
# numbers keep their value and "1月" meets "一月"; letters still fold as dedup folds them.
_NUMERAL_CHARS = "〇一二三四五六七八九"
_DIGITS_AS_NUMERALS = str.maketrans("0123456789０１２３４５６７８９", _NUMERAL_CHARS * 2)
_DIGIT_RUN = re.compile("[0-9０-９]+")


def _numerals(text: str) -> str:
    # translate() on a whole Chinese page costs more than normalizing it; digit runs are few.
    return _DIGIT_RUN.sub(lambda m: m.group().translate(_DIGITS_AS_NUMERALS), text)


_SHINGLING = Shingling(zh_tokens="char")  # normalization and tokens only; n comes from each pass


def _token_strings(texts: list[str | None], langs: list[str], longest_han: int = sys.maxsize,
                   leads: list[bytes] | None = None) -> list[tuple[str, bool]]:
    """Each text normalized as dedup normalizes it: (token string, word mode); English as `_word_string`
    (`leads`: the texts' `_folded_leads`, if known)."""
    leads = leads or [_folded_leads(t) for t in texts]
    return [_SHINGLING.token_string(_numerals(t) if t else t, lang) if lang == "zh"
            else (_word_string(t, longest_han, lead), True) for t, lang, lead in zip(texts, langs, leads)]


_HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff〇"
_NOT_FOLDED_LEAD = bytes(b for b in range(256) if not (0xE3 <= b <= 0xE9 or b == 0xEF))


def _folded_leads(text: str | None) -> bytes:
    """The UTF-8 lead bytes of a text's characters that Chinese folding may change: U+3000-U+9FFF
    (Han, CJK punctuation, kana: E3-E9) and U+F000-U+FFFF (full-width forms: EF), found at memory
    speed (a regular expression for Han took 40% of an English page's cost)."""
    if not text or text.isascii():
        return b""
    return text.encode("utf-8", "surrogatepass").translate(None, _NOT_FOLDED_LEAD)


def _cjk_count(leads: bytes) -> int:
    """Characters U+3000-U+9FFF of a text, from its `_folded_leads`."""
    return len(leads) - leads.count(0xEF)


def _han_bound(text: str, leads: bytes, n: int) -> int:
    """At most how many Han characters an n-gram of a text's character token string holds, digits
    counted (they become numerals that count as Han: "2000年人口統計334,563。" is 15 such characters, five
    of them Han as written). Found over the text's ASCII letters and digits and Han characters alone,
    each a character of the token string, so an n-gram's Han and digits lie within n of them whatever
    spaces and marks the token string drops. 0 for a text without CJK characters, which is not read as
    characters at all; a text with one is read wherever its digits alone may fill an n-gram, as the
    page count of digits did: whether a page is read may not depend on how far its Han lie from the
    numbers it shares with an item. `leads`: the text's `_folded_leads`."""
    if not _cjk_count(leads):
        return 0
    return _han_bound_kernel(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32), n)


@numba.njit(cache=True, nogil=True)
def _han_bound_kernel(cp, n) -> int:
    """`_han_bound` over code points: the most Han characters and digits of n consecutive ASCII
    letters, digits and Han characters (one pass, a ring of the last n)."""
    ring = np.zeros(n, np.int64)
    k, numeral_sum, best = 0, 0, 0
    for i in range(cp.shape[0]):
        c = cp[i]
        numeral = (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or c == 0x3007 or 48 <= c <= 57 \
            or 0xFF10 <= c <= 0xFF19
        if not (numeral or 65 <= c <= 90 or 97 <= c <= 122):
            continue
        j = k % n
        numeral_sum += numeral - ring[j]
        ring[j] = numeral
        k += 1
        best = max(best, numeral_sum)
    return best


def _numeral_count(s: str) -> int:
    """Numerals of a character token string, written or from digits."""
    return sum(map(s.count, _NUMERAL_CHARS))


def _han_counts(s: str, n: int) -> np.ndarray:
    """Han characters (Chinese numerals included: see `_DIGITS_AS_NUMERALS`) per n-gram of a
    character-mode token string, in text order; one count, the whole string's, if it is shorter."""
    cp = np.frombuffer(s.encode("utf-32-le"), np.uint32)
    han = ((cp >= 0x4E00) & (cp <= 0x9FFF)) | ((cp >= 0x3400) & (cp <= 0x4DBF)) | (cp == ord("〇"))
    if len(han) < n:
        return han.sum(keepdims=True)
    total = np.concatenate(([0], np.cumsum(han)))
    return total[n:] - total[:-n]


def _han_windows(s: str, n: int, least: float) -> list[str]:
    """The stretches of `s` covered by its n-grams holding at least `least` Han characters."""
    if len(s) < n:
        return []
    starts = np.flatnonzero(_han_counts(s, n) >= least)
    if not len(starts):
        return []
    gaps = np.flatnonzero(np.diff(starts) > 1)
    firsts, lasts = starts[np.r_[0, gaps + 1]], starts[np.r_[gaps, len(starts) - 1]]
    return [s[a:b + n] for a, b in zip(firsts.tolist(), lasts.tolist())]


# Put for a Han stretch of a page longer than any an item holds as a word: it matches none, and costs
# one byte to hash where a clause of Chinese prose costs three a character. Normalized text never holds it.
_UNMATCHED_HAN = 0


@numba.njit(cache=True, nogil=True)
def _split_han_kernel(cp, longest, out) -> int:
    """`cp` into `out` with a space between a Han character (as `_HAN_CLASS` says) and a letter or digit
    next to it, and each Han stretch longer than `longest` replaced by `_UNMATCHED_HAN`, once for
    stretches with nothing but spaces between them (an n-gram holding one matches no item either way);
    returns the length written (at most twice `cp`'s)."""
    n, run, was_han, was_word, unmatched = 0, 0, False, False, False
    for i in range(cp.shape[0] + 1):
        c = cp[i] if i < cp.shape[0] else 32
        han = (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or c == 0x3007
        word = c != 32
        if was_han and not han:
            if run > longest:
                n -= run
                if not unmatched:
                    out[n] = _UNMATCHED_HAN
                    n += 1
            unmatched = run > longest
        if word and not han:
            unmatched = False
        if word and was_word and han != was_han:
            out[n] = 32
            n += 1
        if i < cp.shape[0]:
            out[n] = c
            n += 1
        run = run + 1 if han else 0
        was_han, was_word = han, word
    return n


def _split_han(s: str, longest: int) -> str:
    """A word token string with a space wherever a Han character touches a letter or digit, so that
    "关系means", "word'关系'" and "word 关系 means" read alike whatever marks a page puts there; Han
    stretches longer than `longest` characters become one `_UNMATCHED_HAN`."""
    if s.isascii():
        return s
    cp = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), np.uint32)
    out = np.empty(2 * len(cp), np.uint32)
    return out[:_split_han_kernel(cp, longest, out)].tobytes().decode("utf-32-le", "surrogatepass")


def _word_string(text: str | None, longest_han: int, leads: bytes) -> str:
    """A text as words (English items, English pages, and Chinese pages as words): dedup's word
    normalization, after Chinese folding (Traditional -> Simplified, width, punctuation) where the
    text holds a character it changes, as for Chinese n-grams: a Chinese word reads the same in an
    item as in a page, whether the langid stage converted the page to Simplified or not. Han stretches
    are then split from letters and digits (`_split_han`), so a Chinese page is read as words whole:
    an English item's words are found there however the item joins its Chinese to them (Chinese prose
    as words is one token a clause, common to no English item). `leads`: the text's `_folded_leads`."""
    if not leads:
        return normalize_words(text or "")  # the same as normalize_chinese without such a character, and faster
    return _split_han(normalize_chinese(text), longest_han)


_HAN_RUN = re.compile(f"[{_HAN_CLASS}]+")
_NOT_HAN_AT_EDGES = re.compile(f"^[^{_HAN_CLASS}]+|[^{_HAN_CLASS}]+$")


def _quoted_chinese(s: str, n: int, least: float) -> list[str]:
    """The Chinese an English item's character token string `s` quotes: its stretches of n-grams
    holding at least `least` Han characters, without the letters around them (a page quoting the
    Chinese alone holds none of them)."""
    return [_NOT_HAN_AT_EDGES.sub("", stretch) for stretch in _han_windows(s, n, least)]


# LaTeX math ($...$, $$...$$, \(...\), \[...\]) and command names: "\frac{\sin x}{\sqrt{x}}" is
# no English, and would outnumber the Han characters of a formula-heavy Chinese item.
_LATEX = re.compile(r"\$\$.*?\$\$|\$.*?\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+", re.S)


def item_lang(text: str) -> str:
    """zh when at least 30% of the letters outside LaTeX are Han (ChineseWebText's bar), else en."""
    counts = script_counts(_LATEX.sub(" ", text))
    letters = sum(counts.values())
    return "zh" if letters and counts.get("Han", 0) / letters >= 0.3 else "en"


class ContaminationIndex:
    """N-grams of benchmark items; `find(texts, langs)` names the items each document shares one with."""

    def __init__(self, items: list[BenchmarkItem], en_ngram: int = 13, zh_ngram: int = 13,
                 en_min_tokens: int = 8, zh_min_tokens: int = 10, zh_min_han_frac: float = 0.8):
        if not 1 <= en_min_tokens <= en_ngram or not 1 <= zh_min_tokens <= zh_ngram:
            raise ValueError("min_tokens: expected 1 <= min_tokens <= ngram for each language")
        self.items = items
        self.zh_min_han_frac = zh_min_han_frac
        self.full = _Pass(en_ngram, zh_ngram)
        self.short = _Pass(en_min_tokens, zh_min_tokens)
        cuts = list(enumerate(_token_strings([i.text for i in items], [i.lang for i in items])))
        # An English item quoting Chinese ("Translate into English: 我爱北京天安门，...") is also cut into the
        # Chinese it quotes, as a Chinese item: a page quoting the Chinese alone holds none of its words.
        least_han = zh_min_han_frac * zh_min_tokens
        quoting = [k for k, i in enumerate(items)
                   if i.lang != "zh" and _han_bound(i.text, _folded_leads(i.text), zh_min_tokens) >= least_han]
        as_chinese = _token_strings([items[k].text for k in quoting], ["zh"] * len(quoting))
        cuts += [(k, (quote, False)) for k, (s, _) in zip(quoting, as_chinese)
                 for quote in _quoted_chinese(s, zh_min_tokens, least_han)]
        full_cuts, short_cuts = [], []
        for k, (s, word_mode) in cuts:
            count = len(s.split()) if word_mode else len(s)
            n, minimum = (en_ngram, en_min_tokens) if word_mode else (zh_ngram, zh_min_tokens)
            # A Chinese cut matched whole must not be mostly numerals: a date ("2011年6月28日": 7 of 10) or a
            # figure and its unit is a fact many pages state, not an item's text.
            if count >= n or count >= minimum and (word_mode or 2 * _numeral_count(s) <= count):
                (full_cuts if count >= n else short_cuts).append((k, (s, word_mode)))
        indexed = {k for k, _ in full_cuts + short_cuts}
        self.too_short = [k for k in range(len(items)) if k not in indexed]  # item numbers that no pass can find
        self._fill(self.full, full_cuts)
        self._fill(self.short, short_cuts)
        self._words = any(p.words for p in self.passes)
        self._longest_han = max((len(run) for k, (s, word_mode) in full_cuts + short_cuts if word_mode
                                 for run in _HAN_RUN.findall(s)), default=0)  # of the Han words indexed
        self._least_han = min((p.han for p in self.passes if p.han is not None), default=None)
        self._longest_zh_n = max(p.zh_n for p in (self.full, self.short))  # its n-grams hold the other pass's

    def _fill(self, p: _Pass, cuts: list[tuple[int, tuple[str, bool]]]) -> None:
        """Index (item number, (token string, word mode)) pairs; an item may come with two cuts."""
        if not cuts:
            return
        tokens = [cut for _, cut in cuts]
        hashes, docs = p.shingles(tokens)
        keep = np.concatenate([self._indexable(*cut, p) for cut in tokens])
        hashes, owner_of = hashes[keep], np.asarray([k for k, _ in cuts], np.int64)[docs[keep]]
        order = np.lexsort((owner_of, hashes))
        hashes, owner_of = hashes[order], owner_of[order]
        unique, starts = np.unique(hashes, return_index=True)
        p.set_hashes(unique, [tuple(sorted(set(group.tolist()))) for group in np.split(owner_of, starts[1:])])
        p.words = any(word_mode for _, word_mode in tokens)
        best = [int(_han_counts(s, p.zh_n).max()) for s, word_mode in tokens if not word_mode]
        # An item's Han-richest n-gram is always indexed. At least 1: an item without Han characters
        # (an HTML or English line in a zh benchmark) would have every English page read as characters.
        p.han = max(min(best), 1) if best else None

    def _indexable(self, s: str, word_mode: bool, p: _Pass) -> np.ndarray:
        """Per n-gram of an item (in text order): whether to index it. Mostly-Latin stretches of a
        Chinese item ("国际联盟international") are common to many pages, so a Chinese n-gram needs
        `zh_min_han_frac` Han characters (Chinese numerals count: see `_DIGITS_AS_NUMERALS`), unless
        none of the item's has (then all are kept: a verbatim copy is always found)."""
        if word_mode:
            return np.ones(max(len(s.split()) - p.en_n + 1, 1), bool)
        keep = _han_counts(s, p.zh_n) >= self.zh_min_han_frac * min(p.zh_n, len(s))
        return keep if keep.any() else np.ones_like(keep)

    @property
    def passes(self) -> list[_Pass]:
        return [p for p in (self.full, self.short) if len(p.hashes)]

    def _other_script(self, texts: list[str | None], chinese: list[bool],
                      leads: list[bytes]) -> list[tuple[int, str, bool]]:
        """(document, token string, word mode) of each document read in the other script: a Chinese
        page as words (`_word_string`, if some item is English), an English page as characters (if some
        item is cut as characters and an n-gram of the page may hold as many Han characters as the
        Han-poorest such item's best n-gram: `_han_bound`, digits counted)."""
        out = []
        for d, (text, zh, lead) in enumerate(zip(texts, chinese, leads)):
            if not text:
                continue
            if zh and self._words:
                out.append((d, _word_string(text, self._longest_han, lead), True))
            elif not zh and self._least_han is not None and _han_bound(text, lead, self._longest_zh_n) >= self._least_han:
                out.append((d, _token_strings([text], ["zh"])[0][0], False))
        return out

    def find(self, texts: list[str | None], langs: list[str | None]) -> list[list[int]]:
        """Per document, the numbers of the items it shares an n-gram with (sorted, no repeats)."""
        found: list[set[int]] = [set() for _ in texts]
        chinese = [is_chinese(lang) for lang in langs]
        leads = [_folded_leads(t) for t in texts]
        tokens = _token_strings(texts, ["zh" if zh else "en" for zh in chinese], self._longest_han, leads)
        other = self._other_script(texts, chinese, leads)
        for p in self.passes:
            pieces, owner = list(tokens), list(range(len(texts)))  # token strings, and their document
            for d, s, word_mode in other:
                if word_mode and p.words:
                    pieces.append((s, True))
                    owner.append(d)
                elif not word_mode and p.han is not None:
                    windows = _han_windows(s, p.zh_n, p.han)
                    pieces += [(w, False) for w in windows]
                    owner += [d] * len(windows)
            hashes, docs = p.shingles(pieces)
            if not len(hashes):
                continue
            at, where = p.lookup(hashes)
            for doc, w in zip(np.asarray(owner)[docs[at]].tolist(), where.tolist()):
                found[doc].update(p.owners[w])
        return [sorted(f) for f in found]
