"""The document view and repetition measures shared by the English and Chinese rule sets.

A rule set (`RuleSet`) judges a `Doc`: the text plus what rules derive from it (words, lines,
paragraphs), each computed on first use and then shared, so a document is tokenized once per
chain however many rule sets count its words.

datatrove's filters each split the text into words again (spaCy, or spaCy + jieba for Chinese) and
build every n-gram as a Python string, once per n. Here a document is tokenized once into `Words`
(integer ids and character offsets, numpy arrays), and one compiled pass (`_ngram_kernel`, numba)
computes every n-gram measure on 64-bit rolling hashes of those ids: n-grams of length n+1 are
hashed from those of length n, and only where the n-gram of length n repeats, so the nine Gopher
n-gram sizes cost passes over ever fewer positions instead of nine passes of string joins (and,
compiled, none of the per-call overhead that dominated numpy on documents of a few hundred words).

The measures reproduce datatrove 0.10.1's definitions exactly (`find_duplicates`,
`find_top_duplicate`, `find_all_duplicate` in its gopher_repetition_filter.py), including its
greedy skip over a duplicated n-gram and Counter's tie-breaking, so decisions agree with it
(tests/test_datatrove_oracle.py). Hash collisions between different n-grams are possible in
principle (64-bit hashes; about 1e-10 for a 100k-word document) and ignored.
"""
from __future__ import annotations

import functools
import itertools
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, ClassVar, Iterable

import numba
import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio), for the hash mixing step
_ROLL = np.uint64(0xD6E8FEB86659FD93)  # odd 64-bit base of the rolling hash of character n-grams


def encodable(text: str) -> str:
    """`text` with lone surrogates (from a lossy decode upstream) as "?", one for one, so that
    tokenizers that need UTF-8 accept it and offsets stay the same."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def find_duplicates(items: Iterable[str], short_chars: int = 0) -> tuple[int, int]:
    """(number of items that repeat an earlier item, characters in those repeats). Items of at
    most `short_chars` characters, surrounding whitespace aside, never count as repeats."""
    items = items if isinstance(items, list) else list(items)
    counts = Counter(items)
    repeats = len(items) - len(counts)
    if not repeats:
        return 0, 0
    chars = sum(map(len, items)) - sum(map(len, counts))
    if short_chars:
        for s, c in counts.items():
            if c > 1 and len(s.strip()) <= short_chars:
                repeats -= c - 1
                chars -= len(s) * (c - 1)
    return repeats, chars


def split_paragraphs(text: str) -> list[str]:
    """Gopher's paragraphs: the stripped text split at blank lines, re.split("\\n{2,}", text.strip())."""
    text = text.strip()
    if "\n\n" not in text:
        return [text]
    # A run of k newlines leaves k // 2 - 1 empty parts and, for odd k, a newline before the next paragraph.
    return [part[1:] if part[0] == "\n" else part for part in text.split("\n\n") if part]


def split_lines(text: str) -> list[str]:
    """Gopher's lines: the text split at runs of newlines (not stripped, as datatrove does), the
    result of re.split("\\n+", text): an empty first or last line where the text starts or ends with one."""
    lines = list(filter(None, text.split("\n")))
    if text.startswith("\n") or not text:
        lines.insert(0, "")
    if text.endswith("\n"):
        lines.append("")
    return lines


@dataclass
class Words:
    """A document's words, tokenized once and shared by every rule that counts words or n-grams."""

    words: list[str]
    _measures: tuple = field(default=(), repr=False)  # n -> (top n-gram chars, duplicate n-gram chars)

    def __len__(self) -> int:
        return len(self.words)

    def __iter__(self):
        return iter(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.vocabulary

    def not_all_letters(self) -> list[tuple[str, int]]:
        """The distinct words that are not all letters, each with how often it occurs."""
        others = list(itertools.filterfalse(str.isalpha, self.vocabulary))
        return list(zip(others, self.counts_of(others)))

    @cached_property
    def vocabulary(self) -> dict[str, int]:
        """Distinct word -> its id, the position where it first occurs."""
        return self._ids_and_vocabulary[1]

    @cached_property
    def ids(self) -> np.ndarray:
        """The id of every word (below len(words))."""
        return self._ids_and_vocabulary[0]

    @cached_property
    def _ids_and_vocabulary(self) -> tuple[np.ndarray, dict[str, int]]:
        vocabulary: dict[str, int] = {}
        ids = np.fromiter(map(vocabulary.setdefault, self.words, itertools.count()), np.int64, len(self.words))
        return ids, vocabulary

    @cached_property
    def _id_counts(self) -> np.ndarray:
        return np.bincount(self.ids, minlength=len(self))

    def counts_of(self, distinct: list[str]) -> list[int]:
        """How often each of the `distinct` words (of the vocabulary) occurs: a look-up for the
        few a rule asks about, where a dict of every word's count cost a third of Gopher quality."""
        ids = np.fromiter(map(self.vocabulary.__getitem__, distinct), np.int64, len(distinct))
        return self._id_counts[ids].tolist()

    @cached_property
    def char_offsets(self) -> np.ndarray:
        """offsets[i] = characters in words[:i], so an n-gram's length is a difference."""
        offsets = np.zeros(len(self.words) + 1, np.int64)
        vocabulary = self.vocabulary
        if 2 * len(vocabulary) < len(self.words):  # words repeat (English): measure each distinct one once
            lengths = np.zeros(len(self.words), np.int64)
            lengths[np.fromiter(vocabulary.values(), np.int64, len(vocabulary))] = np.fromiter(
                map(len, vocabulary), np.int64, len(vocabulary))
            np.cumsum(lengths[self.ids], out=offsets[1:])
        else:
            np.cumsum(np.fromiter(map(len, self.words), np.int64, len(self.words)), out=offsets[1:])
        return offsets

    def ngram_measures(self, n: int) -> tuple[int, int]:
        """(`top_ngram_chars`, `duplicate_ngram_chars`) for word n-grams, from one compiled pass
        over every n up to the largest asked for so far (at least 10, Gopher's largest)."""
        if n >= len(self._measures):
            top = np.zeros(max(n, 10) + 1, np.int64)
            dup = np.zeros_like(top)
            _ngram_kernel(self.ids, self.char_offsets, len(top) - 1, top, dup)
            self._measures = (*zip(top.tolist(), dup.tolist()),)
        return self._measures[n]


@numba.njit(cache=True, nogil=True)
def _ngram_kernel(ids, offsets, max_n, top_chars, dup_chars):
    """For n = 1 .. max_n: top_chars[n] = characters of the most frequent word n-gram (joined with
    spaces) times its count, the first one to occur among equally frequent ones (Counter's order);
    dup_chars[n] = characters in n-grams that repeat an earlier one, scanning left to right and
    jumping past each repeat (datatrove's find_all_duplicate).

    Only positions whose n-gram occurs more than once are kept from one n to the next (with the
    n-gram's group and count): an (n+1)-gram can repeat only where the n-grams at its position and
    the next both repeat. Every other position adds an n-gram that nothing matches, so the
    duplicate scan need not visit it."""
    size = ids.shape[0]
    positions = np.empty(size, np.int64)
    groups = np.empty(size, np.int64)
    counts = np.empty(size, np.int64)
    hashes = np.empty(size, np.uint64)
    word_counts = np.zeros(size, np.int64)
    for i in range(size):
        word_counts[ids[i]] += 1
    m = 0
    for i in range(size):
        if word_counts[ids[i]] > 1:
            positions[m] = i
            groups[m] = ids[i]
            counts[m] = word_counts[ids[i]]
            hashes[m] = np.uint64(ids[i]) * _MIX
            m += 1
    seen = np.zeros(size, np.bool_)
    table = _hash_table(size)
    group_counts = np.empty(size, np.int64)
    for n in range(1, max_n + 1):
        if size >= n:
            top, start = 1, 0  # every n-gram occurs once: the first one wins
            for k in range(m):
                if counts[k] > top:
                    top, start = counts[k], positions[k]
            top_chars[n] = (offsets[start + n] - offsets[start] + n - 1) * top
        chars, resume = 0, 0
        seen[:] = False
        for k in range(m):
            p = positions[k]
            if p < resume:
                continue
            if seen[groups[k]]:
                chars += offsets[p + n] - offsets[p]
                resume = p + n
            else:
                seen[groups[k]] = True
        dup_chars[n] = chars
        # the (n+1)-grams that may repeat, hashed from their n-gram's hash and their last word
        candidates = 0
        for k in range(m - 1):
            if positions[k + 1] == positions[k] + 1:
                h = hashes[k]
                positions[candidates] = positions[k]
                hashes[candidates] = (h ^ (h >> np.uint64(29))) * _MIX + np.uint64(ids[positions[k] + n])
                candidates += 1
        n_groups = _group_equal(hashes, candidates, n, table, groups)
        group_counts[:n_groups] = 0
        for j in range(candidates):
            group_counts[groups[j]] += 1
        m = 0
        for k in range(candidates):
            if group_counts[groups[k]] > 1:
                positions[m], groups[m], counts[m], hashes[m] = positions[k], groups[k], group_counts[groups[k]], hashes[k]
                m += 1


@numba.njit(cache=True, nogil=True)
def _hash_table(size):
    """An open-addressing table for up to `size` 64-bit keys (`_group_equal`): (keys, values,
    round that filled each slot, shift that maps a key to its home slot)."""
    bits = 1
    while (1 << bits) < 2 * size:
        bits += 1
    return (np.empty(1 << bits, np.uint64), np.empty(1 << bits, np.int64), np.zeros(1 << bits, np.int32),
            np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(table, key, stamp):
    """The slot holding `key` in this round (`stamp`), else the free slot where it goes (linear probing)."""
    keys, _, rounds, shift = table
    mask = keys.shape[0] - 1
    s = np.int64((key * _MIX) >> shift)
    while rounds[s] == stamp and keys[s] != key:
        s = (s + 1) & mask
    return s


@numba.njit(cache=True, nogil=True)
def _group_equal(hashes, count, stamp, table, groups):
    """groups[j] = number of the distinct value of hashes[:count] that hashes[j] holds, numbered in
    order of first occurrence; returns how many there are. `stamp` (> 0, new for every call on the
    same table) marks the slots filled by this call, so the table is never cleared."""
    keys, values, rounds, _ = table
    n_groups = 0
    for j in range(count):
        s = _slot(table, hashes[j], stamp)
        if rounds[s] != stamp:
            rounds[s], keys[s], values[s] = stamp, hashes[j], n_groups
            n_groups += 1
        groups[j] = values[s]
    return n_groups


def top_ngram_chars(words: Words, n: int) -> int:
    """Characters of the most frequent word n-gram (joined with spaces) times its count; among
    equally frequent n-grams, the one that occurs first (Counter.most_common's order)."""
    return words.ngram_measures(n)[0]


def duplicate_ngram_chars(words: Words, n: int) -> int:
    """Characters in word n-grams that repeat an earlier n-gram, scanning left to right and
    jumping past each repeat (so overlapping repeats count once), as Gopher defines it."""
    return words.ngram_measures(n)[1]


def char_ngram_duplicate_fraction(text: str, n: int) -> float:
    """Share of characters covered by character n-grams that occur more than once in the text
    (ChineseWebText's internal-duplication measure, with n = 13)."""
    if len(text) < n:
        return 0.0
    return _covered_chars(char_ngram_repeats(text, n)[1], n) / len(text)


@numba.njit(cache=True, nogil=True)
def _covered_chars(starts, n):
    """Characters inside at least one of the n-grams whose start is marked in `starts`."""
    covered, end = 0, 0
    for i in range(starts.shape[0]):
        if starts[i]:
            covered += i + n - max(end, i)
            end = i + n
    return covered


@functools.lru_cache(maxsize=2)
def code_points(text: str) -> np.ndarray:
    """The text's code points (lone surrogates included), for the compiled passes of several rule
    sets over the same text."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    points.flags.writeable = False
    return points


@functools.lru_cache(maxsize=2)
def char_ngram_repeats(text: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(later, repeated) for every character n-gram of `text` (len(text) >= n), by start position:
    it occurred at an earlier position / it occurs more than once. Cached for the last texts: two
    Chinese rules look at the same text (`without_longest_repeat`, then
    `char_ngram_duplicate_fraction` on its result, which is mostly the text itself)."""
    later, repeated = _char_ngram_kernel(code_points(text), n)
    later.flags.writeable = repeated.flags.writeable = False  # shared by the callers of the cache
    return later, repeated


@numba.njit(cache=True, nogil=True)
def _char_ngram_kernel(points, n):
    """(later, repeated): marks the character n-grams equal to one at an earlier position (`later`) and to one
    anywhere else (`repeated`): each n-gram is found in a hash table by a rolling polynomial hash
    of its code points (two multiplications a position, where hashing every n-gram afresh took n)
    and compared character by character with the n-gram whose hash it shares, so equal means equal.
    The marks are allocated here: numpy's allocations from Python cost more than the pass on most texts."""
    count = points.shape[0] - n + 1
    later, repeated = np.zeros(count, np.bool_), np.zeros(count, np.bool_)
    table = _hash_table(count)
    keys, first, rounds, _ = table  # the first position of each distinct n-gram
    mask = keys.shape[0] - 1
    top = np.uint64(1)  # _ROLL ** (n - 1), the weight of the character that leaves the window
    h = np.uint64(0)
    for k in range(n):
        h = h * _ROLL + np.uint64(points[k]) + np.uint64(1)
        if k:
            top *= _ROLL
    for i in range(count):
        if i:
            h = (h - (np.uint64(points[i - 1]) + np.uint64(1)) * top) * _ROLL + np.uint64(points[i + n - 1]) + np.uint64(1)
        s = _slot(table, h, 1)
        while rounds[s] == 1 and not _same(points, first[s], i, n):
            s = (s + 1) & mask  # another n-gram with the same hash
            while rounds[s] == 1 and keys[s] != h:
                s = (s + 1) & mask
        if rounds[s] == 1:
            later[i] = repeated[i] = repeated[first[s]] = True
        else:
            rounds[s], keys[s], first[s] = 1, h, i
    return later, repeated


@numba.njit(cache=True, nogil=True, inline="always")
def _same(points, a, b, n):
    for k in range(n):
        if points[a + k] != points[b + k]:
            return False
    return True


def without_longest_repeat(text: str, n: int, min_fraction: float = 0.0) -> str:
    """`text` without its longest duplicated block, when that block is at least `min_fraction` of
    the text: the longest run of character n-grams that each occurred earlier in the text (an
    article pasted twice loses its second copy). Spam that repeats many different phrases keeps
    all but one of them."""
    if len(text) < 2 * n:
        return text
    start, end = _longest_run(char_ngram_repeats(text, n)[0])
    if start == end:
        return text
    end += n - 1  # where the run's last n-gram ends
    if end - start < min_fraction * len(text):
        return text
    return text[:start] + text[end:]


@numba.njit(cache=True, nogil=True)
def _longest_run(marks):
    """(start, end) of the first longest run of True in `marks`; (0, 0) when there is none."""
    best_start, best_end, start = 0, 0, -1
    for i in range(marks.shape[0] + 1):
        if i < marks.shape[0] and marks[i]:
            if start < 0:
                start = i
        elif start >= 0:
            if i - start > best_end - best_start:
                best_start, best_end = start, i
            start = -1
    return best_start, best_end


class Doc:
    """The text being judged and what rules derived from it (each computed once)."""

    def __init__(self, text: str, tokenize: Callable[[str], list[str] | Words], url: str | None = None,
                 count_words: Callable[[str], int] | None = None):
        self.text = text
        self.tokenize = tokenize
        self.url = url
        self.count_words = count_words  # a cheaper len(tokenize(text)), when the language has one
        self._word_count: int | None = None  # len(tokenize(text)), when a rule already counted them

    @property
    def word_count(self) -> int:
        if "words" in self.__dict__ or (self.count_words is None and self._word_count is None):
            return len(self.words)
        if self._word_count is None:
            self._word_count = self.count_words(self.text)
        return self._word_count

    @cached_property
    def words(self) -> Words:
        words = self.tokenize(self.text)
        return words if isinstance(words, Words) else Words(words)

    @cached_property
    def lines(self) -> list[str]:
        return split_lines(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        return split_paragraphs(self.text)

    @cached_property
    def nonempty_lines(self) -> list[str]:
        """The lines between newlines that hold more than whitespace (several rule sets count them)."""
        return [line for line in self.text.split("\n") if line.strip()]

    def without_longest_repeat(self, n: int, min_fraction: float) -> str:
        """`without_longest_repeat(self.text, n, min_fraction)`, computed once per document (two
        Chinese rule sets measure repetition on it)."""
        cache = self.__dict__.setdefault("_without_repeat", {})
        if (n, min_fraction) not in cache:
            cache[(n, min_fraction)] = without_longest_repeat(self.text, n, min_fraction)
        return cache[(n, min_fraction)]

    def rewrite(self, text: str, word_count: int | None = None) -> None:
        """Replace the text (line cleaning); what was derived from the old text is dropped.
        `word_count`: len(tokenize(text)), when the caller counted the words of the new text."""
        if text != self.text:
            self.text = text
            self._word_count = word_count
            for derived in ("words", "lines", "paragraphs", "nonempty_lines", "_without_repeat"):
                self.__dict__.pop(derived, None)


@dataclass(frozen=True)
class Rejection:
    reason: str  # "<rule set>:<rule>", e.g. "gopher_quality:min_words"
    value: float | int | str  # the value that failed the rule

    @property
    def detail(self) -> str:
        return f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)


Signals = dict[str, float | int]


class RuleSet:
    """One published rule set (Gopher quality, C4, ...): thresholds are the dataclass fields of a
    subclass; `judge` records every signal it computes into `signals` (column `q_<name>`) and
    returns the first rule that failed, or None. A threshold of None (or 0, as in datatrove)
    disables its rule; its signal is still recorded."""

    name: ClassVar[str]

    def signal_types(self) -> dict[str, type]:
        """The signals `judge` may record, name -> int or float (the stage's fixed columns)."""
        raise NotImplementedError

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        raise NotImplementedError

    def reject(self, rule: str, value: float | int | str) -> Rejection:
        return Rejection(f"{self.name}:{rule}", value)
