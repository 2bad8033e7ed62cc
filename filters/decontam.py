"""Benchmark contamination: which documents share an n-gram with a benchmark's test items.

English: word 13-grams (GPT-3's rule); Chinese: character n-grams (n chosen by
bench/decontam.py: the smallest n whose false positives on clean news stay under 0.1%, see
docs/benchmarks.md). Text is normalized exactly as dedup normalizes it (filters/fast_normalize.py:
lowercase, numbers -> 0, punctuation and whitespace folded, Traditional -> Simplified), and
n-grams are hashed by the same compiled kernel as dedup's shingles (64-bit), so an item is found
whatever its punctuation, width, case or script in the page.

A page is shingled in its own language's mode, and also in the other one over its runs of the other
script, so an item is found whatever the page's majority language (an exam-prep page labelled zh
quoting MMLU, an English page quoting C-Eval): a Chinese page's stretches without Han characters
(but for Chinese words spaced as English spaces its words: see `_han_word`) are read as English
words, and an English page that holds Han characters is read as Chinese characters, only where its
n-grams hold as many Han characters as the Han-poorest item cut as characters has in its best
n-gram, and at least one (see `_Pass.han`). An item's language (`item_lang`, or the benchmark's
`lang`) decides how the item is cut; an English item that quotes Chinese is also cut into the
Chinese it quotes (its stretches of `zh_min_tokens`-grams as Han as a Chinese item's indexed ones,
without the English around them), each cut as a Chinese item would be, so a page quoting the Chinese
alone is found. One with only a few Han characters (a word) is found in a Chinese page by its word
n-grams, the word among them: indexing its mostly-Latin character n-grams would match unrelated
pages.

An item shorter than one n-gram cannot share one: items of at least `min_tokens` tokens are
indexed whole as `min_tokens`-grams (a second, shorter pass over documents, run only if such items
exist); shorter ones are counted as too short to detect and reported.

The index (a sorted array of n-gram hashes per pass plus, for each hash, the items that hold it)
is built from the benchmark files once per worker process: benchmarks are small next to a corpus,
and the cost of a document is its own n-grams (one presence-table lookup each), plus those of its
runs of the other script, whatever the number of benchmarks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from filters.fast_normalize import normalize_word_lines
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
_DIGITS_AS_NUMERALS = str.maketrans("0123456789０１２３４５６７８９", "〇一二三四五六七八九" * 2)
_DIGIT_RUN = re.compile("[0-9０-９]+")


def _numerals(text: str) -> str:
    # translate() on a whole Chinese page costs more than normalizing it; digit runs are few.
    return _DIGIT_RUN.sub(lambda m: m.group().translate(_DIGITS_AS_NUMERALS), text)


_SHINGLING = Shingling(zh_tokens="char")  # normalization and tokens only; n comes from each pass


def _token_strings(texts: list[str | None], langs: list[str]) -> list[tuple[str, bool]]:
    """Each text normalized as dedup normalizes it: (token string, word mode)."""
    return [_SHINGLING.token_string(_numerals(t) if t and lang == "zh" else t, lang)
            for t, lang in zip(texts, langs)]


_HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff〇"
_NOT_CJK_LEAD = bytes(b for b in range(256) if not 0xE3 <= b <= 0xE9)


def _cjk_count(text: str) -> int:
    """Characters U+3000-U+9FFF (Han, CJK punctuation, kana): UTF-8 lead bytes E3-E9, counted at
    memory speed (a regular expression for Han took 40% of an English page's cost)."""
    return len(text.encode("utf-8", "surrogatepass").translate(None, _NOT_CJK_LEAD))


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


def _han_word(zh_min_tokens: int) -> str:
    """A pattern for a Chinese word inside English text ("the concept of 关系 (guanxi)", an answer option on
    a line of its own): a Han stretch too short to be indexed as Chinese (longer ones an English item
    quotes are: see `_quoted_chinese`), after an ASCII space or line break, or one and a mark ("(", a
    quote), as English spaces its words. Chinese prose rarely spaces so: its stretches stay out of the
    word runs of a Chinese page."""
    after_space = rf"(?:(?<=[ \t\r\n])|(?<=[ \t\r\n][^\s{_HAN_CLASS}]))"
    return f"{after_space}[{_HAN_CLASS}]{{1,{max(zh_min_tokens - 1, 1)}}}(?![{_HAN_CLASS}])"


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
        # Chinese it quotes, as a Chinese item: a Chinese page is read as words only where it has no Han
        # but for words too short to be indexed as Chinese.
        least_han = zh_min_han_frac * zh_min_tokens
        quoting = [k for k, i in enumerate(items) if i.lang != "zh" and _cjk_count(i.text) >= least_han]
        as_chinese = _token_strings([items[k].text for k in quoting], ["zh"] * len(quoting))
        cuts += [(k, (quote, False)) for k, (s, _) in zip(quoting, as_chinese)
                 for quote in _quoted_chinese(s, zh_min_tokens, least_han)]
        full_cuts, short_cuts = [], []
        for k, (s, word_mode) in cuts:
            count = len(s.split()) if word_mode else len(s)
            n, minimum = (en_ngram, en_min_tokens) if word_mode else (zh_ngram, zh_min_tokens)
            if count >= minimum:
                (full_cuts if count >= n else short_cuts).append((k, (s, word_mode)))
        indexed = {k for k, _ in full_cuts + short_cuts}
        self.too_short = [k for k in range(len(items)) if k not in indexed]  # item numbers that no pass can find
        self._fill(self.full, full_cuts)
        self._fill(self.short, short_cuts)
        words = [p.en_n for p in self.passes if p.words]
        # A run of n words is at least 2n - 1 characters long (a Chinese word counting as one): shorter
        # runs cannot hold an n-gram. A run starts without Han, and the pattern says so first: most tries
        # in Chinese text end at that one class, before the alternation.
        self._latin_run = re.compile(f"[^{_HAN_CLASS}](?:[^{_HAN_CLASS}]|{_han_word(zh_min_tokens)})"
                                     f"{{{2 * min(words) - 2},}}") if words else None
        self._least_han = min((p.han for p in self.passes if p.han is not None), default=None)

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

    def _other_script(self, texts: list[str | None], chinese: list[bool]) -> list[tuple[int, str, bool]]:
        """(document, token string, word mode) of what each document holds in the other script: a
        Chinese page's runs without Han characters but for Chinese words (`_han_word`) as words (if
        some item is English), an English page as characters (if some item is cut as characters and
        the page may hold as many Han characters as the Han-poorest such item's best n-gram: digits,
        which become numerals, are not counted)."""
        runs, out = [], []
        for d, (text, zh) in enumerate(zip(texts, chinese)):
            if not text:
                continue
            if zh and self._latin_run:
                runs += [(d, run.replace("\n", " ")) for run in self._latin_run.findall(text)]
            elif not zh and self._least_han is not None and _cjk_count(text) >= self._least_han:
                out.append((d, _token_strings([text], ["zh"])[0][0], False))
        # One compiled pass for all runs (a call per run cost more than the rest of the page).
        words = normalize_word_lines("\n".join(run for _, run in runs)) if runs else []
        return out + [(d, w, True) for (d, _), w in zip(runs, words)]

    def find(self, texts: list[str | None], langs: list[str | None]) -> list[list[int]]:
        """Per document, the numbers of the items it shares an n-gram with (sorted, no repeats)."""
        found: list[set[int]] = [set() for _ in texts]
        chinese = [is_chinese(lang) for lang in langs]
        tokens = _token_strings(texts, ["zh" if zh else "en" for zh in chinese])
        other = self._other_script(texts, chinese)
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
