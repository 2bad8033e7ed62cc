"""English quality rule sets: Gopher repetition, Gopher quality, C4, FineWeb.

One small class per rule set, thresholds as named fields whose defaults are datatrove 0.10.1's
(`datatrove.pipeline.filters`: GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter,
FineWebQualityFilter), each rule with the same definition, so the decisions agree with
datatrove's (tests/test_datatrove_oracle.py). What differs is the cost: datatrove runs spaCy on the
whole text in every filter and on every line again for C4's sentence count; here the text is
split at whitespace once and each distinct whitespace-separated chunk is tokenized once per worker
process (`english_words`), by spaCy's tokenizer or, for the commonest shapes, by shortcuts that
give spaCy's tokens (checked against it). spaCy's tokenizer treats chunks independently (its own
cache is keyed by chunk), so the words are spaCy's, but for one corner: its last pass, which merges
special cases such as ":)" back, can see one spanning two chunks ("( :)a": "(", ":", ")", "a";
":)a" alone: ":)", "a"). A document's words and C4's sentence counts are then computed on token
numbers by compiled passes (`_ChunkTokens`), with no Python object per word.
"""
from __future__ import annotations

import functools
import re
import string
import threading
import unicodedata
from array import array
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from operator import methodcaller
from typing import ClassVar

import numba
import numpy as np

from filters.repetition import (_MIX, Doc, Rejection, RuleSet, Signals, Words, code_points, duplicate_ngram_chars,
                                encodable, find_duplicates, top_ngram_chars)

# datatrove.utils.text.PUNCTUATION and TERMINAL_PUNCTUATION (0.10.1), verbatim as code points:
# Gopher's "symbol" words consist only of these; FineWeb's line-punctuation rule looks for the
# terminal ones at the end of a line. tests/test_datatrove_oracle.py checks both sets are equal.
PUNCTUATION = frozenset(
    "!/\u2014\u201d:\uff05\uff11\u3008&(\u3001\u2501\\\u3010#%\u300c\u300d\uff0c\u3011\uff1b+^]~\u201c\u300a"
    "\u201e';\u2019{|\u2236\u00b4[=-`*\uff0e\uff08\u2013\uff1f\uff01\uff1a$\uff5e\u00ab\u3009,><\u300b)?"
    "\uff09\u3002\u2026@_.\"}\u25ba\u00bb"
    + "".join(map(chr, [*range(0, 9), 11, 12, *range(13, 32), *range(127, 160)])))
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a"
    "\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8"
    "\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d\u2047\u2048"
    "\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8"
    "\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57"
    "\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047"
    "\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c"
    "\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0"
    "\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c"
    "\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42"
    "\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44"
    "\U00016e98\U0001bc9f\U0001da88")
SYMBOLS = PUNCTUATION | TERMINAL_PUNCTUATION  # datatrove's PUNCTUATION_SET
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher (Rae et al. 2021)


# ---------------------------------------------------------------------------------------------
# Words: spaCy's blank English tokenizer, once per distinct whitespace-separated chunk


# spaCy's English suffixes that always split off a word of letters ("word," -> "word" ","); a
# full stop does too after a lower-case letter ("SpaceX." stays whole). Checked against spaCy on
# every chunk of ../shared/data's English text by tests/test_datatrove_oracle.py.
_SPLIT_AFTER_WORD = frozenset(",;:?!)]\"'\u201d\u2019")

# Chunks of ASCII letters, hyphens, full stops and the marks below split as spaCy's English rules
# (spacy/lang/punctuation.py) say: these marks (LIST_PUNCT and LIST_QUOTES) come off either end
# one at a time, a run of full stops as a whole, "'s" at the end; a single final full stop after
# a lower-case letter, a hyphen, one of the marks or two capitals; runs of one to three hyphens
# between letters split the rest. _AffixSplitter settles such chunks without spaCy;
# tests/test_quality.py checks it against spaCy on random chunks.
_MARKS = frozenset("\"'!?,;:()_\u201c\u201d\u2018\u2019")
_FULL_STOP_AFTER = _MARKS | frozenset(string.ascii_lowercase + "-")
_CAPITALS = frozenset(string.ascii_uppercase)
_POSSESSIVE = ("'s", "'S", "\u2019s", "\u2019S")
_AFFIX_CHUNK = re.compile("[A-Za-z\"'!?,;:()_\u201c\u201d\u2018\u2019.\\-]+")
_CORE = re.compile("[A-Za-z]+(?:-{1,3}[A-Za-z]+)*|[A-Za-z'\u2019]+")
_HYPHEN_RUN = re.compile("(-+)")
_RAREST_MARKS_FIRST = ":;_()\u201c\u201d\u2018\u2019\"!?,'.-"


def _prefix_length(s: str) -> int:
    if s[0] in _MARKS:
        return 1
    return len(s) - len(s.lstrip(".")) if s.startswith("..") else 0


def _suffix_length(s: str) -> int:
    if not s:
        return 0
    if s.endswith(".."):
        return len(s) - len(s.rstrip("."))
    if s.endswith(_POSSESSIVE):
        return 2
    if s[-1] in _MARKS:
        return 1
    if s[-1] == "." and len(s) > 1 and (
            s[-2] in _FULL_STOP_AFTER or len(s) > 2 and s[-2] in _CAPITALS and s[-3] in _CAPITALS):
        return 1
    return 0


def _affix_tokens(chunk: str, special_cases: frozenset[str], split_core=None) -> tuple[str, ...] | None:
    """spaCy's prefix/suffix loop and infix split (spacy/tokenizer.pyx `_split_affixes`,
    `_attach_tokens`) for a chunk of the characters above; None for other chunks, and where a
    special case would take over. What is left after the loop is split here where it is letters
    and hyphens between them, else by `split_core` (None: not settled)."""
    if not _AFFIX_CHUNK.fullmatch(chunk):
        return None
    prefixes: list[str] = []
    suffixes: list[str] = []
    s = chunk
    while s:
        if s in special_cases:
            return None
        pre = _prefix_length(s)
        if pre and s[pre:] in special_cases:
            return None
        suf = _suffix_length(s[pre:])
        if suf and s[:-suf] in special_cases:
            return None
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
        else:
            break
    if s:
        if _CORE.fullmatch(s):
            prefixes += _HYPHEN_RUN.split(s) if "-" in s else [s]
        elif split_core is None:
            return None
        else:
            prefixes += split_core(s)
    suffixes.reverse()
    return (*prefixes, *suffixes)


class _AffixSplitter:
    """A chunk's spaCy tokens by `_affix_tokens`, unless spaCy's last pass would re-merge some of
    them: it matches the special cases that contain an affix (":)", "Mr.", "''") against the
    tokens, and only those whose pieces differ from their affix split change anything."""

    def __init__(self, tokenizer):
        from spacy.attrs import ORTH

        self.special_cases = frozenset(tokenizer.rules)
        patterns: set[tuple[str, ...]] = set()
        self.unsplit_cases: dict[str, list[str]] = {}  # mark -> special cases _affix_tokens cannot split
        for case, pieces in tokenizer.rules.items():
            if " " in case or not (tokenizer.find_prefix(case) or tokenizer.find_suffix(case)
                                   or tokenizer.find_infix(case)):
                continue  # not matched in the last pass (spaCy's faster_heuristics)
            pattern = _affix_tokens(case, frozenset())
            if pattern is None:
                if _AFFIX_CHUNK.fullmatch(case):  # otherwise never inside a chunk settled here
                    mark = next(m for m in _RAREST_MARKS_FIRST if m in case)  # any of its marks would do
                    self.unsplit_cases.setdefault(mark, []).append(case)
            elif pattern != tuple(piece[ORTH] for piece in pieces):
                patterns.add(pattern)
        self.patterns = frozenset(patterns)
        self.pattern_starts = frozenset(pattern[0] for pattern in patterns)
        self.longest = max(map(len, patterns), default=0)
        self.token_match, self.url_match = tokenizer.token_match, tokenizer.url_match
        self.find_infix = tokenizer.find_infix

    def _split_core(self, s: str) -> list[str]:
        """spaCy's `_attach_tokens` for what its prefix/suffix loop left ("word--", "end.--The"):
        whole where its token or URL pattern matches it, else split at its infixes (spaCy's own
        expressions; an infix at the start does not split)."""
        if (self.token_match and self.token_match(s)) or (self.url_match and self.url_match(s)):
            return [s]
        pieces, start = [], 0
        for match in self.find_infix(s) or ():
            if match.start() == 0:
                continue
            if match.start() != start:
                pieces.append(s[start:match.start()])
            if match.end() != match.start():
                pieces.append(match.group())
            start = match.end()
        if start < len(s):
            pieces.append(s[start:])
        return pieces

    def __call__(self, chunk: str) -> tuple[str, ...] | None:
        tokens = _affix_tokens(chunk, self.special_cases, self._split_core)
        if tokens is None:
            return None
        for i, token in enumerate(tokens):
            if token in self.pattern_starts:
                for j in range(i + 1, min(len(tokens), i + self.longest) + 1):
                    if tokens[i:j] in self.patterns:
                        return None
        for mark, cases in self.unsplit_cases.items():
            if mark in chunk and any(case in chunk for case in cases):
                return None
        return tokens


# A token as spaCy's rule-based sentencizer sees it: sentence-final punctuation, other
# punctuation, anything else. A sentence starts at every word whose last token before it, other
# punctuation aside, is sentence-final punctuation.
_WORD, _PUNCT, _PUNCT_END = 0, 1, 2


class _TokenTable(dict):
    """token -> its number, and what the rules ask of each token by number: its text, length,
    whether it is all letters and its sentence code (arrays that grow; numpy views of them for
    compiled passes)."""

    def __init__(self, punct_chars: frozenset[str], lock: threading.RLock):
        super().__init__()
        self.punct_chars = punct_chars  # the sentencizer's sentence-final marks
        self.lock = lock  # its store's: held while numpy views of the arrays exist
        self.text: list[str] = []
        self.lengths = array("q")
        self.all_letters = array("b")
        self.sentence_codes = array("b")

    def __missing__(self, token: str) -> int:
        number = self[token] = len(self.text)
        self.text.append(token)
        return number

    def measure_new(self) -> None:
        """Lengths, letter flags and sentence codes of the tokens added since the last call."""
        new = self.text[len(self.lengths):]
        self.lengths.extend(map(len, new))
        self.all_letters.extend(map(str.isalpha, new))
        self.sentence_codes.extend(map(self._sentence_code, new))

    def _sentence_code(self, token: str) -> int:
        if token.isalnum():  # no punctuation (most tokens)
            return _WORD
        return _PUNCT_END if token in self.punct_chars else _PUNCT if _all_punctuation(token) else _WORD


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


class _ChunkIndex:
    """Chunk text -> chunk number for compiled passes over a text's code points: each chunk's
    code points are kept, hashed (FNV-1a) into an open-addressing table of chunk numbers, and
    compared in full where hashes match."""

    def __init__(self):
        self.slots = np.full(1 << 12, -1, np.int64)  # chunk number per slot, -1: free
        self.hashes = np.zeros(1024, np.uint64)  # per chunk number
        self.begins = np.zeros(1024, np.int64)  # its code points: points[begins[c]:ends[c]]
        self.ends = np.zeros(1024, np.int64)
        self.points = np.zeros(1 << 14, np.uint32)
        self.used = 0  # code points kept
        self.size = 0  # chunks indexed: numbers 0 .. size - 1

    def add(self, chunks: list[str], numbers: list[int]) -> None:
        """Index the new chunks, numbered size, size + 1, ... in some order."""
        points = np.frombuffer("".join(chunks).encode("utf-32-le", "surrogatepass"), np.uint32)
        size = self.size + len(chunks)
        if size > len(self.hashes):
            grow = 2 * size
            self.hashes, self.begins, self.ends = (np.concatenate([a, np.zeros(grow - len(a), a.dtype)])
                                                   for a in (self.hashes, self.begins, self.ends))
        if self.used + len(points) > len(self.points):
            self.points = np.concatenate([self.points, np.zeros(self.used + 2 * len(points), np.uint32)])
        if 2 * size > len(self.slots):  # at most half full
            self.slots = np.full(1 << (2 * size).bit_length(), -1, np.int64)
            _rehash(self.slots, self.hashes, self.size)
        lengths = np.fromiter(map(len, chunks), np.int64, len(chunks))
        self.used = _index_chunks(np.array(numbers, np.int64), points, lengths, self.slots, self.hashes, self.begins,
                                  self.ends, self.points, self.used)
        self.size = size

    def look_up(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each chunk of the text's code points: its number (-1 where not indexed), start,
        stop, and the number of its text among those not indexed (-1 where indexed); and where
        each of those first occurs."""
        return _look_up_chunks(points, _SPACE, self.slots, self.hashes, self.begins, self.ends, self.points)


@numba.njit(cache=True, nogil=True, inline="always")
def _home(h, slots):
    return np.int64((h * _MIX) >> np.uint64(32)) & (slots.shape[0] - 1)


@numba.njit(cache=True, nogil=True)
def _rehash(slots, hashes, size):
    mask = slots.shape[0] - 1
    for c in range(size):
        s = _home(hashes[c], slots)
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = c


@numba.njit(cache=True, nogil=True)
def _index_chunks(numbers, points, lengths, slots, hashes, begins, ends, kept, used):
    mask = slots.shape[0] - 1
    start = 0
    for k in range(numbers.shape[0]):
        c, h = numbers[k], _FNV_OFFSET
        begins[c] = used
        for j in range(start, start + lengths[k]):
            h = (h ^ np.uint64(points[j])) * _FNV_PRIME
            kept[used] = points[j]
            used += 1
        ends[c], hashes[c] = used, h
        start += lengths[k]
        s = _home(h, slots)
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = c
    return used


@numba.njit(cache=True, nogil=True)
def _look_up_chunks(points, space, slots, hashes, begins, ends, kept):
    """`_ChunkIndex.look_up`, and the chunks not indexed numbered by their first occurrence:
    (numbers, starts, stops, new: for each chunk not indexed its new chunk's number, else -1,
    position of each new chunk's first occurrence)."""
    size = points.shape[0]
    numbers = np.empty((size + 1) // 2, np.int64)
    starts = np.empty_like(numbers)
    stops = np.empty_like(numbers)
    new = np.full_like(numbers, -1)
    firsts = np.empty_like(numbers)
    n_new = 0
    seen = np.empty(0, np.int64)  # the new chunks' first positions, by hash (open addressing), made on the first one
    mask = slots.shape[0] - 1
    k = i = 0
    while i < size:
        if points[i] < space.shape[0] and space[points[i]]:
            i += 1
            continue
        b, h = i, _FNV_OFFSET
        while i < size and not (points[i] < space.shape[0] and space[points[i]]):
            h = (h ^ np.uint64(points[i])) * _FNV_PRIME
            i += 1
        starts[k], stops[k], numbers[k] = b, i, -1
        s = _home(h, slots)
        while slots[s] >= 0:
            c = slots[s]
            if hashes[c] == h and _same_points(kept, begins[c], ends[c], points, b, i):
                numbers[k] = c
                break
            s = (s + 1) & mask
        if numbers[k] < 0:
            if seen.shape[0] == 0:
                capacity = 2
                while capacity < 2 * numbers.shape[0]:
                    capacity *= 2
                seen = np.full(capacity, -1, np.int64)
            s = _home(h, seen)
            while seen[s] >= 0 and not _same_points(points, starts[seen[s]], stops[seen[s]], points, b, i):
                s = (s + 1) & (seen.shape[0] - 1)
            if seen[s] < 0:
                seen[s] = k
                firsts[n_new] = k
                new[k] = n_new
                n_new += 1
            else:
                new[k] = new[seen[s]]
        k += 1
    return numbers[:k], starts[:k], stops[:k], new[:k], firsts[:n_new]


@numba.njit(cache=True, nogil=True, inline="always")
def _same_points(a, a_start, a_stop, b, b_start, b_stop):
    if a_stop - a_start != b_stop - b_start:
        return False
    for j in range(a_stop - a_start):
        if a[a_start + j] != b[b_start + j]:
            return False
    return True


def _locked(method):
    """The store's method run holding its lock: threads of one worker (Beam runs several) share
    the store, whose arrays grow and whose compiled passes run without the GIL."""
    @functools.wraps(method)
    def locked(self, *args):
        with self.lock:
            return method(self, *args)
    return locked


class _ChunkTokens:
    """Each distinct chunk's spaCy tokens, as token numbers (`_TokenTable`): chunk -> its number,
    chunk number c -> tokens[starts[c]:starts[c + 1]]. `add` tokenizes a document's new chunks,
    the hard ones in one spaCy call; the commonest shapes, letters alone or followed by one
    punctuation mark, are settled without spaCy unless the chunk is one of its special cases
    ("cannot", "gonna", "etc."), and so are most other chunks of ASCII letters and common
    punctuation (`_AffixSplitter`). A document's words are then its chunks' numbers expanded by
    one compiled pass (`_expand_chunks`), no Python object per word."""

    limit = 2_000_000  # distinct chunks kept per process (a few hundred MB at most); then start over

    def __init__(self, tokenizer, punct_chars: frozenset[str]):
        self.lock = threading.RLock()
        self.tokenizer = tokenizer
        self.punct_chars = punct_chars
        self.special_cases = frozenset(tokenizer.rules)
        self.affix_split = _AffixSplitter(tokenizer)
        self.clear()

    def clear(self) -> None:
        # New objects, not emptied ones: a document's `EnglishWords` keeps the table it was built with.
        self.numbers: dict[str, int] = {}
        self.table = _TokenTable(self.punct_chars, self.lock)
        self.starts = array("q", [0])
        self.tokens = array("q")
        self.index = _ChunkIndex()
        self.first = np.full(1024, -1, np.int64)  # scratch for `_expand_chunks`, all -1 between calls

    def __len__(self) -> int:
        return len(self.numbers)

    @_locked
    def __getitem__(self, chunk: str) -> tuple[str, ...]:
        """The chunk's tokens, as text."""
        if chunk not in self.numbers:
            self.add([chunk])
        c = self.numbers[chunk]
        return tuple(map(self.table.text.__getitem__, self.tokens[self.starts[c]:self.starts[c + 1]]))

    @_locked
    def text_chunk_numbers(self, text: str) -> np.ndarray:
        """The number of each chunk of text.split(), the known ones found by one compiled pass (`_ChunkIndex`)."""
        numbers, starts, stops, new, firsts = self.index.look_up(code_points(text))
        if len(firsts):  # new chunks: tokenize them together, then fill them in
            chunks = list(map(text.__getitem__, map(slice, starts[firsts].tolist(), stops[firsts].tolist())))
            table = self.table
            self.add(chunks)
            if self.table is not table:  # started over (`limit`): the numbers found are gone
                return self.text_chunk_numbers(text)
            unknown = new >= 0
            numbers[unknown] = np.fromiter(map(self.numbers.__getitem__, chunks), np.int64, len(chunks))[new[unknown]]
        return numbers

    @_locked
    def add(self, chunks: list[str]) -> None:
        new = [c for c in dict.fromkeys(chunks) if c not in self.numbers]
        if self.numbers and len(self.numbers) + len(new) >= self.limit:
            self.clear()
        numbered = self._tokenize(new)
        self.index.add(numbered, list(map(self.numbers.__getitem__, numbered)))  # every chunk numbered is indexed

    def _tokenize(self, new: list[str]) -> list[str]:
        """Number and tokenize the new chunks; returns the chunks numbered: these and the pieces of long ones."""
        # A chunk over MAX_CHUNK_CHARS is tokenized as consecutive pieces of that length, each a chunk of its own.
        pieces = {chunk: [chunk[i:i + MAX_CHUNK_CHARS] for i in range(0, len(chunk), MAX_CHUNK_CHARS)]
                  for chunk in new if len(chunk) > MAX_CHUNK_CHARS}
        short = list(dict.fromkeys([c for c in new if c not in pieces] + [
            piece for chunk_pieces in pieces.values() for piece in chunk_pieces if piece not in self.numbers]))
        self._tokenize_short(short)
        for chunk, chunk_pieces in pieces.items():
            self._settle(chunk, [token for piece in chunk_pieces for token in self[piece]])
        self.table.measure_new()
        return short + list(pieces)

    def _tokenize_short(self, new: list[str]) -> None:
        hard = []
        special = self.special_cases
        settle, table, tokens = self._settle, self.table, self.tokens
        for chunk in new:
            if chunk.isalpha() and chunk not in special:
                self.numbers[chunk] = len(self.starts) - 1
                tokens.append(table[chunk])
                self.starts.append(len(tokens))
            elif (len(chunk) > 2 and (chunk[-1] in _SPLIT_AFTER_WORD or chunk[-1] == "." and chunk[-2].islower())
                  and chunk[:-1].isalpha() and chunk not in special and chunk[:-1] not in special):
                self.numbers[chunk] = len(self.starts) - 1
                tokens.append(table[chunk[:-1]])
                tokens.append(table[chunk[-1]])
                self.starts.append(len(tokens))
            elif (pieces := self.affix_split(chunk)) is not None:
                settle(chunk, pieces)
            else:
                hard.append(chunk)
        if not hard:
            return
        # Joined by newlines, each chunk is tokenized as on its own: a newline is a token of its
        # own, which no special case holds, so spaCy's last pass cannot merge across two chunks
        # (as it can across a single space, see above).
        spacy_tokens = iter(self.tokenizer(encodable("\n".join(hard))))
        token = next(spacy_tokens, None)
        start = 0
        for chunk in hard:
            end = start + len(chunk)
            pieces = []
            while token is not None and token.idx < end:
                if not token.is_space:  # the newline before the chunk
                    pieces.append(token.text)
                token = next(spacy_tokens, None)
            settle(chunk, pieces)
            start = end + 1

    def _settle(self, chunk: str, pieces) -> None:
        self.numbers[chunk] = len(self.starts) - 1
        self.tokens.extend(map(self.table.__getitem__, pieces))
        self.starts.append(len(self.tokens))

    @_locked
    def words(self, text: str) -> EnglishWords:
        numbers = self.text_chunk_numbers(text)
        if len(self.first) < len(self.table.text):
            self.first = np.full(2 * len(self.table.text), -1, np.int64)
        token_numbers, ids, offsets = _expand_chunks(
            numbers, np.frombuffer(self.starts, np.int64), np.frombuffer(self.tokens, np.int64),
            np.frombuffer(self.table.lengths, np.int64), self.first)
        return EnglishWords(self.table, numbers, token_numbers, ids, offsets)

    @_locked
    def count(self, text: str) -> int:
        numbers = self.text_chunk_numbers(text)
        starts = np.frombuffer(self.starts, np.int64)
        return int(starts[numbers + 1].sum() - starts[numbers].sum())

    def sentences_and_words(self, text: str) -> tuple[int, int]:
        """(sentences, words) of the text's lines (str.splitlines()): the sentences spaCy's
        rule-based sentencizer finds in each line (datatrove's `split_into_sentences`), summed."""
        counts = line_chunk_counts(text)
        return self.sentences_and_words_of(text, None, counts, np.ones(len(counts), np.bool_))

    @_locked
    def sentences_and_words_of(self, text: str, words: Words | None, counts: np.ndarray, keep: np.ndarray
                               ) -> tuple[int, int]:
        """`sentences_and_words` of the text's lines marked in `keep` (`counts`: each line's
        chunks); `words`: the text's words, if made, whose chunk numbers are used when this
        store made them as it is now."""
        if isinstance(words, EnglishWords) and words.table is self.table:
            chunks = words.chunks
        else:
            chunks = self.text_chunk_numbers(text)
        sentences, n_words = _sentences_and_words(
            chunks, np.cumsum(counts), keep, np.frombuffer(self.starts, np.int64),
            np.frombuffer(self.tokens, np.int64), np.frombuffer(self.table.sentence_codes, np.int8))
        return int(sentences), int(n_words)


@numba.njit(cache=True, nogil=True)
def _sentences_and_words(chunks, line_ends, keep, starts, tokens, codes):
    """`_ChunkTokens.sentences_and_words_of`; line i is chunks[line_ends[i - 1]:line_ends[i]]."""
    sentences, words = 0, 0
    for i in range(line_ends.shape[0]):
        if not keep[i]:
            continue
        c, end = line_ends[i - 1] if i else 0, line_ends[i]
        last = _WORD  # the last code before, other punctuation aside
        if c < end:
            sentences += 1  # a line of tokens has one sentence, and one more at each word after a final mark
        while c < end:
            for j in range(starts[chunks[c]], starts[chunks[c] + 1]):
                code = codes[tokens[j]]
                words += 1
                if code == _WORD and last == _PUNCT_END:
                    sentences += 1
                if code != _PUNCT:
                    last = code
            c += 1
    return sentences, words


@numba.njit(cache=True, nogil=True)
def _expand_chunks(chunks, starts, tokens, lengths, first):
    """A document's words from its chunks' numbers: (token number of each word, its id = the
    position of the word's first occurrence, character offsets as `Words.char_offsets`).
    `first` (per token number, -1) is left as it was found."""
    size = 0
    for c in chunks:
        size += starts[c + 1] - starts[c]
    numbers = np.empty(size, np.int64)
    ids = np.empty(size, np.int64)
    offsets = np.empty(size + 1, np.int64)
    offsets[0] = 0
    k = 0
    for c in chunks:
        for j in range(starts[c], starts[c + 1]):
            t = tokens[j]
            numbers[k] = t
            if first[t] < 0:
                first[t] = k
            ids[k] = first[t]
            offsets[k + 1] = offsets[k] + lengths[t]
            k += 1
    for k in range(size):
        first[numbers[k]] = -1
    return numbers, ids, offsets


class EnglishWords(Words):
    """`Words` of an English text, built from token numbers (`_ChunkTokens.words`); the word
    strings are made only when asked for."""

    def __init__(self, table: _TokenTable, chunks: np.ndarray, numbers: np.ndarray, ids: np.ndarray,
                 offsets: np.ndarray):
        self._measures = ()
        self.table, self.chunks, self.numbers = table, chunks, numbers  # chunk numbers, token numbers
        self.__dict__["ids"], self.__dict__["char_offsets"] = ids, offsets

    def __len__(self) -> int:
        return len(self.numbers)

    @cached_property
    def words(self) -> list[str]:
        return list(map(self.table.text.__getitem__, self.numbers.tolist()))

    @cached_property
    def _firsts(self) -> np.ndarray:
        """Positions of each distinct word's first occurrence."""
        return np.flatnonzero(self.ids == np.arange(len(self.ids)))

    @cached_property
    def vocabulary(self) -> dict[str, int]:
        firsts = self._firsts
        return dict(zip(map(self.table.text.__getitem__, self.numbers[firsts].tolist()), firsts.tolist()))

    def not_all_letters(self) -> list[tuple[str, int]]:
        firsts = self._firsts
        with self.table.lock:
            firsts = firsts[np.frombuffer(self.table.all_letters, np.int8)[self.numbers[firsts]] == 0]
        return list(zip(map(self.table.text.__getitem__, self.numbers[firsts].tolist()),
                        self._id_counts[firsts].tolist()))

    def __contains__(self, word: str) -> bool:
        number = self.table.get(word)
        return number is not None and bool((self.numbers == number).any())


# Hostile chunks ("((((...", "1::::...", "a:a:a:...", 20 kB of them took 60 s): spaCy's tokenizer takes time
# quadratic in a chunk's length where it strips affix after affix, searching its suffix expression over the
# whole rest of the chunk each time (0.3 us a character) and copying the rest, and where its URL expression
# backtracks over every ":" in the chunk. The two expressions are replaced by ones that decide the same in
# linear time (`_end_suffix_search`, `_linear_url_match`), and a chunk is cut into pieces of at most
# MAX_CHUNK_CHARS for the copies: a chunk that long is no English word (../shared/data's English text has
# none over 150 characters); its tokens are its pieces' (tests/test_redos.py).
MAX_CHUNK_CHARS = 1000
_URL_USER = r"(?:\S+(?::\S*)?@)?"  # spaCy's URL_PATTERN's user:password@; as a set of strings, \S+@


def _end_suffix_search(search, suffixes: list[str]):
    r"""spaCy's suffix search (`search`, compiled from `suffixes`, each ending at the string's end), run over
    the string's last characters only: a match that starts earlier is longer than any suffix of bounded
    length, so it is a run of full stops (spaCy's one unbounded suffix, r"\.\.+"), which starts where the
    string's last run of full stops does."""
    try:
        from re import _parser as sre_parse
    except ImportError:  # Python 3.10
        import sre_parse
    widths = {entry: sre_parse.parse(entry).getwidth()[1] for entry in suffixes}
    unbounded = {entry for entry, width in widths.items() if width >= sre_parse.MAXREPEAT}
    if unbounded != {r"\.\.+"}:
        return search  # another spaCy: its own search
    width = max(w for entry, w in widths.items() if entry not in unbounded) + 1

    def end_search(s: str):
        start = len(s) - width
        if start <= 0:
            return search(s)
        found = search(s, start)  # lookbehinds still see the characters before `start`
        if found is not None and found.start() == start:  # longer than any bounded suffix: full stops
            found = search(s, len(s.rstrip(".")))
        return found

    return end_search


def _linear_url_match(match):
    r"""spaCy's URL match with its user:password@ part written \S+@, the same set of strings without the
    backtracking over each ":" (only whether it matches is used)."""
    pattern = match.__self__.pattern
    return re.compile(pattern.replace(_URL_USER, r"(?:\S+@)?")).match if _URL_USER in pattern else match


@functools.lru_cache(maxsize=1)
def _chunk_tokens() -> _ChunkTokens:
    import spacy  # loaded once per worker process
    from spacy.pipeline.sentencizer import Sentencizer
    from spacy.util import compile_suffix_regex

    nlp = spacy.blank("en")
    nlp.vocab.lex_attr_getters = {}  # lexeme features (shape, norm, ...) for new words: tokens never need them
    tokenizer = nlp.tokenizer
    if tokenizer.suffix_search.__self__.pattern == compile_suffix_regex(nlp.Defaults.suffixes).pattern:
        tokenizer.suffix_search = _end_suffix_search(tokenizer.suffix_search, list(nlp.Defaults.suffixes))
    tokenizer.url_match = _linear_url_match(tokenizer.url_match)
    return _ChunkTokens(tokenizer, frozenset(Sentencizer.default_punct_chars))


def english_words(text: str) -> EnglishWords:
    """The words datatrove's `split_into_words(text, "eng")` returns (spaCy's tokens, whitespace
    tokens dropped), as `Words` (iterate for the strings)."""
    return _chunk_tokens().words(text)


def english_word_count(text: str) -> int:
    """len(english_words(text)), without expanding the words."""
    return _chunk_tokens().count(text)


def _all_punctuation(token: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in token)  # spaCy's IS_PUNCT


# The code points str.split() splits at and those str.splitlines() ends a line at (all below
# U+3001, the last whitespace), taken from Python itself.
_SPACE = np.array([chr(i).isspace() for i in range(0x3001)])
_LINE_BREAK = np.array([len(f"a{chr(i)}b".splitlines()) == 2 for i in range(0x3001)])


def line_chunk_counts(text: str) -> np.ndarray:
    """len(line.split()) for each line of text.splitlines(), in one compiled pass (line breaks are
    whitespace too, so the lines' chunks are text.split()'s, in order)."""
    return _line_chunk_counts(code_points(text), _SPACE, _LINE_BREAK)


@numba.njit(cache=True, nogil=True)
def _line_chunk_counts(points, space, line_break):
    counts = np.zeros(points.shape[0] + 1, np.int64)
    line, in_chunk, broken = 0, False, False
    i = 0
    while i < points.shape[0]:
        p = points[i]
        broken = p < line_break.shape[0] and line_break[p]
        if broken:
            if p == 13 and i + 1 < points.shape[0] and points[i + 1] == 10:  # "\r\n" ends one line
                i += 1
            line += 1
            in_chunk = False
        elif p < space.shape[0] and space[p]:
            in_chunk = False
        elif not in_chunk:
            counts[line] += 1
            in_chunk = True
        i += 1
    return counts[:line if broken or not points.shape[0] else line + 1]


# ---------------------------------------------------------------------------------------------
# Rule sets


def _ngram_limits(pairs: dict[int, float]) -> dict[int, float]:
    return {int(n): float(v) for n, v in pairs.items()}


@dataclass
class GopherRepetition(RuleSet):
    """Gopher's repetition rules (Rae et al. 2021, table A1): duplicated lines and paragraphs,
    the most frequent word 2-4-grams, and characters in duplicated word 5-10-grams."""

    name: ClassVar[str] = "gopher_repetition"
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_ngram_char_frac: dict[int, float] = field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    # Not in datatrove (0 = every line and paragraph counts): a repeated line or paragraph of at
    # most this many characters is not a duplicate (captions, "Advertisement", "Buy Now", table
    # headers, invisible "\u200b" paragraphs; see FineWebQuality.dup_short_line_chars).
    dup_short_line_chars: int = 0

    def __post_init__(self):
        self.top_ngram_char_frac = _ngram_limits(self.top_ngram_char_frac)
        self.dup_ngram_char_frac = _ngram_limits(self.dup_ngram_char_frac)

    def signal_types(self) -> dict[str, type]:
        return {"dup_para_frac": float, "dup_para_char_frac": float, "dup_line_frac": float,
                "dup_line_char_frac": float,
                **{f"top_{n}gram_char_frac": float for n in self.top_ngram_char_frac},
                **{f"dup_{n}gram_char_frac": float for n in self.dup_ngram_char_frac}}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        text = doc.text
        if not text:
            return self.reject("empty", 0)
        n_chars = len(text)
        for unit in ("para", "line"):  # datatrove's order: paragraphs first, then lines
            items = doc.paragraphs if unit == "para" else doc.lines
            dups, dup_chars = find_duplicates(items, self.dup_short_line_chars)
            for rule, value in ((f"dup_{unit}_frac", dups / len(items)), (f"dup_{unit}_char_frac", dup_chars / n_chars)):
                signals[rule] = value
                limit = getattr(self, rule)
                if limit and value > limit:
                    return self.reject(rule, value)
        for n, limit in self.top_ngram_char_frac.items():
            value = signals[f"top_{n}gram_char_frac"] = top_ngram_chars(doc.words, n) / n_chars
            if value > limit:
                return self.reject(f"top_{n}gram", value)
        for n, limit in self.dup_ngram_char_frac.items():
            value = signals[f"dup_{n}gram_char_frac"] = duplicate_ngram_chars(doc.words, n) / n_chars
            if value > limit:
                return self.reject(f"dup_{n}gram", value)
        return None


_starts_with_bullet = methodcaller("startswith", ("\u2022", "-"))
_ends_with_ellipsis = methodcaller("endswith", ("...", "\u2026"))


@dataclass
class GopherQuality(RuleSet):
    """Gopher's quality rules (Rae et al. 2021, section A.1.1): word count, mean word length,
    hash and ellipsis ratios, bullet and ellipsis lines, alphabetic words, stop words."""

    name: ClassVar[str] = "gopher_quality"
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8  # datatrove's name: the minimum share of words with a letter
    min_stop_words: int | None = 2
    stop_words: list[str] = field(default_factory=lambda: list(GOPHER_STOP_WORDS))
    line_rules_min_lines: int = 1  # not in datatrove (1 = always): fewer lines skip the bullet/ellipsis rules

    def __post_init__(self):
        self._stop_words = frozenset(self.stop_words)

    def signal_types(self) -> dict[str, type]:
        return {"n_words": int, "mean_word_length": float, "hash_word_ratio": float,
                "ellipsis_word_ratio": float, "bullet_line_frac": float, "ellipsis_line_frac": float,
                "alpha_word_frac": float, "stop_words": int}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        text, words = doc.text, doc.words
        # Words of letters only (most of them) are neither symbols nor letter-free: no symbol is a letter.
        others = words.not_all_letters()
        symbols = [(w, c) for w, c in others if SYMBOLS.issuperset(w)]
        n_words = signals["n_words"] = len(words) - sum(c for _, c in symbols)
        if self.min_doc_words and n_words < self.min_doc_words:
            return self.reject("min_words", n_words)
        if self.max_doc_words and n_words > self.max_doc_words:
            return self.reject("max_words", n_words)
        chars = int(words.char_offsets[-1]) - sum(len(w) * c for w, c in symbols)
        mean = signals["mean_word_length"] = chars / n_words if n_words else 0.0
        if self.min_avg_word_length and mean < self.min_avg_word_length:
            return self.reject("min_mean_word_length", mean)
        if self.max_avg_word_length and mean > self.max_avg_word_length:
            return self.reject("max_mean_word_length", mean)
        n_tokens = max(len(words), 1)
        for rule, value in (("hash_word_ratio", text.count("#") / n_tokens),
                            ("ellipsis_word_ratio", (text.count("...") + text.count("\u2026")) / n_tokens)):
            signals[rule] = value
            if self.max_symbol_word_ratio and value > self.max_symbol_word_ratio:
                return self.reject(rule, value)
        lines = text.splitlines() or [""]
        judge_lines = len(lines) >= self.line_rules_min_lines
        bullets = sum(map(_starts_with_bullet, map(str.lstrip, lines))) / len(lines)
        signals["bullet_line_frac"] = bullets
        if self.max_bullet_lines_ratio and judge_lines and bullets > self.max_bullet_lines_ratio:
            return self.reject("bullet_lines", bullets)
        ellipsis = sum(map(_ends_with_ellipsis, map(str.rstrip, lines))) / len(lines)
        signals["ellipsis_line_frac"] = ellipsis
        if self.max_ellipsis_lines_ratio and judge_lines and ellipsis > self.max_ellipsis_lines_ratio:
            return self.reject("ellipsis_lines", ellipsis)
        # a word of one character among `others` is no letter (most of them: marks, digits)
        alpha = signals["alpha_word_frac"] = (len(words) - sum(
            n for w, n in others if len(w) == 1 or not any(map(str.isalpha, w)))) / n_tokens
        if self.max_non_alpha_words_ratio and alpha < self.max_non_alpha_words_ratio:
            return self.reject("alpha_words", alpha)
        # a look-up per stop word: the set's intersection with the vocabulary walked every distinct word
        stop = signals["stop_words"] = sum(map(words.__contains__, self._stop_words))
        if self.min_stop_words and stop < self.min_stop_words:
            return self.reject("stop_words", stop)
        return None


_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_END_PUNCTUATION = (".", "?", "!", '"', "'")
_ends_in_terminal = methodcaller("endswith", _END_PUNCTUATION)
_ends_in_dots = methodcaller("endswith", "...")
_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                   "use cookies")


@dataclass
class C4Quality(RuleSet):
    """C4's rules (Raffel et al. 2020, section 2.2, and tensorflow_datasets' c4_utils): keep only
    lines that end in terminal punctuation, have at least 3 words, no word over 1000 characters,
    no "javascript" and no cookie/terms-of-use notice; drop pages with "lorem ipsum" or a curly
    bracket, or with fewer than 5 sentences left. Rewrites the text to the kept lines."""

    name: ClassVar[str] = "c4"
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5  # -1 disables
    # Not in datatrove (None = min_num_sentences on every page): the minimum scales with the
    # page's structure, as ChineseWebText's minimum length does here (filters/chinese.py), from
    # min_num_sentences for a page whose lines do not end in terminal punctuation (menus, lists,
    # headlines) down to this for one whose lines all do: short news items and notices of three
    # or four sentences are prose, and Gopher's 50 words still bound their length.
    min_num_sentences_prose: int | None = None
    min_words_per_line: int = 3  # -1 disables
    max_word_length: int = 1000  # -1 disables
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    # Not in datatrove (False = each line by its own words): `min_words_per_line` judges a line of a
    # hard-wrapped paragraph by the whole paragraph's words (`hard_wrapped_runs`); as datatrove
    # counts them, a paragraph's last line of one or two words ("to Emma.") is cut out of book text.
    join_hard_wrapped_lines: bool = False

    def signal_types(self) -> dict[str, type]:
        return {"c4_sentences": int, "c4_line_keep_frac": float, "c4_terminal_line_frac": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        text = doc.text
        lines = text.splitlines()
        cite = self.remove_citations and "[" in text
        # A phrase that the whole text lacks (citations removed, lower case) is in none of its
        # lines: only the phrases it has are looked for line by line.
        searchable = (_CITATION.sub("", text) if cite else text).lower()
        lorem = self.filter_lorem_ipsum and "lorem ipsum" in searchable
        javascript = self.filter_javascript and "javascript" in searchable
        curly = self.filter_curly_bracket and "{" in text
        policy = [p for p in _POLICY_PHRASES if p in searchable] if self.filter_policy else []
        long_lines = self.max_word_length != -1 and max(map(len, lines), default=0) > self.max_word_length
        counts = line_chunk_counts(text)
        stripped = list(map(str.strip, lines))
        wrapped = self._long_wrapped_lines(stripped, counts) if self.join_hard_wrapped_lines else None
        judged = self._kept_lines(stripped, counts, text, doc.__dict__.get("words"), wrapped,
                                  cite, lorem, javascript, curly, policy, long_lines)
        if isinstance(judged, Rejection):
            return judged
        kept, sentences, n_words, terminal, non_empty = judged
        signals["c4_sentences"] = sentences
        signals["c4_line_keep_frac"] = len(kept) / len(lines) if lines else 0.0
        prose = signals["c4_terminal_line_frac"] = terminal / non_empty if non_empty else 0.0
        minimum = self.min_num_sentences
        if self.min_num_sentences_prose is not None and self.min_num_sentences_prose < minimum:
            minimum -= (minimum - self.min_num_sentences_prose) * prose
        if sentences < minimum:
            return self.reject("min_sentences", sentences)
        # The kept text's English word count, for the rules after this one (FineWeb's newline ratio)
        doc.rewrite("\n".join(kept).strip(), n_words if doc.tokenize is english_words else None)
        return None

    def _long_wrapped_lines(self, stripped: list[str], counts: np.ndarray) -> np.ndarray | None:
        """Numbers of the lines (`stripped` of surrounding whitespace) of hard-wrapped paragraphs of
        at least `min_words_per_line` words (`counts`: each line's chunks), or None when the text is
        not hard-wrapped."""
        non_empty = np.flatnonzero(np.fromiter(map(bool, stripped), np.bool_, len(stripped)))
        runs = hard_wrapped_runs(list(filter(None, stripped)))
        if runs is None:
            return None
        words = np.bincount(runs, weights=counts[non_empty])
        return non_empty[words[runs] >= self.min_words_per_line]

    def _kept_lines(self, stripped: list[str], counts: np.ndarray, text: str, words: Words | None,
                    wrapped: np.ndarray | None = None, cite: bool = False, lorem: bool = False,
                    javascript: bool = False, curly: bool = False, policy: list[str] = (), long_lines: bool = False):
        """(kept lines, sentences, words, lines ending a sentence, non-empty lines), or the
        rejection for a lorem-ipsum or curly-bracket line. `stripped`: the text's lines
        (str.splitlines) without surrounding whitespace; `counts`: each line's chunks, the
        words `min_words_per_line` counts (before citations are removed); `words`: the text's
        words, if made; `wrapped`: numbers of the lines that `min_words_per_line` keeps whatever
        their own words (`_long_wrapped_lines`); the flags: what the text holds (citations, the
        phrases, a curly bracket, a line over `max_word_length`). The line-dropping checks run in
        the cheapest order (any order drops the same lines): whole-list steps first, then the
        phrase and bracket checks on the lines still kept, in order (the first such line decides
        a rejection). The common text has none of these and takes the whole-list steps alone."""
        cleaned = [_CITATION.sub("", s) if "[" in s else s for s in stripped] if cite else stripped
        ends = np.fromiter(map(_ends_in_terminal, cleaned), np.bool_, len(cleaned))
        ends &= ~np.fromiter(map(_ends_in_dots, cleaned), np.bool_, len(cleaned))
        terminal = int(ends.sum())
        non_empty = len(cleaned) - cleaned.count("")
        keep = counts >= self.min_words_per_line
        if wrapped is not None:
            keep[wrapped] = True
        if self.filter_no_terminal_punct:
            keep &= ends
        if long_lines:
            # only a line longer than the limit can hold a word longer than it
            long = keep & (np.fromiter(map(len, stripped), np.int64, len(stripped)) > self.max_word_length)
            for number in np.flatnonzero(long).tolist():
                keep[number] = max(map(len, stripped[number].split()), default=0) <= self.max_word_length
        if lorem or javascript or curly or policy:
            for number in np.flatnonzero(keep).tolist():
                line = cleaned[number]
                if lorem or javascript or policy:
                    lower = line.lower()
                    if lorem and "lorem ipsum" in lower:
                        return self.reject("lorem_ipsum", "lorem ipsum")
                    if javascript and "javascript" in lower:
                        keep[number] = False
                        continue
                if curly and "{" in line:
                    return self.reject("curly_bracket", "{")
                if policy and any(p in lower for p in policy):
                    keep[number] = False
        kept = list(compress(cleaned, kept_mask := keep.tolist()))
        if cite and kept != list(compress(stripped, kept_mask)):
            sentences, n_words = _chunk_tokens().sentences_and_words("\n".join(kept))
        else:  # the kept lines are the text's own: counted on its chunks, without tokenizing them again
            sentences, n_words = _chunk_tokens().sentences_and_words_of(text, words, counts, keep)
        return kept, sentences if self.min_num_sentences != -1 else 0, n_words, terminal, non_empty


# Hard-wrapped text (books, e-mail, plain-text archives: every line broken near a fixed column,
# mid-sentence) is recognised by its lines: the wrap column (the 90th percentile of the non-empty
# lines' widths; typed text wraps at 60-80) lies in WRAP_COLUMNS, at least WRAPPED_LINE_SHARE of the
# lines are "wrapped" (at least WRAPPED_WIDTH of the column wide, at most 1.2 times it, not ending in
# terminal punctuation) and at least LOWER_CONTINUATION_SHARE of the wrapped lines continue with a
# lower-case letter (the sentence goes on; menus, lists and headlines continue with a capital).
# Measured on ../shared/data (bench/quality_labelled.py): every Gutenberg part has >= 0.5 wrapped
# lines and >= 0.47 lower-case continuations; of the other labelled documents only one web page of
# hard-wrapped prose meets all three.
WRAP_COLUMNS = (40, 100)
WRAPPED_WIDTH = 0.75
WRAPPED_LINE_SHARE = 0.4
LOWER_CONTINUATION_SHARE = 0.4


def hard_wrapped_runs(stripped: list[str]) -> np.ndarray | None:
    """For each of the non-empty lines, `stripped` of their surrounding whitespace, the number of the
    paragraph it belongs to (a run of wrapped lines and the line that ends it), or None when the
    text is not hard-wrapped (see WRAP_COLUMNS). Per-line Python work only where a line is wide
    enough to be wrapped (most lines of a book: its per-line cost in the shipped chain)."""
    n = len(stripped)
    if n < 3:
        return None
    widths = np.fromiter(map(len, stripped), np.int64, n)
    rank = int(0.9 * (n - 1))
    column = int(np.partition(widths, rank)[rank])
    if not WRAP_COLUMNS[0] <= column <= WRAP_COLUMNS[1]:
        return None
    body = widths[:-1]  # the last line ends its paragraph
    wide = np.flatnonzero((WRAPPED_WIDTH * column <= body) & (body <= 1.2 * column)).tolist()
    wrapped = np.zeros(n, np.bool_)
    wrapped[wide] = [stripped[i][-1] not in TERMINAL_PUNCTUATION for i in wide]
    n_wrapped = int(wrapped.sum())
    if n_wrapped < WRAPPED_LINE_SHARE * n:
        return None
    lower = sum(stripped[i][0].islower() for i in (np.flatnonzero(wrapped) + 1).tolist())
    if lower < LOWER_CONTINUATION_SHARE * n_wrapped:
        return None
    runs = np.zeros(n, np.int64)
    np.cumsum(~wrapped[:-1], out=runs[1:])
    return runs


def join_hard_wrapped(lines: list[str]) -> list[str]:
    """The non-empty `lines` with each hard-wrapped paragraph joined into one line; `lines` as they
    are when the text is not hard-wrapped. Only the rules' view: the document's text is not changed."""
    stripped = list(map(str.strip, lines))
    runs = hard_wrapped_runs(stripped)
    if runs is None:
        return lines
    bounds = [0, *(np.flatnonzero(np.diff(runs)) + 1).tolist(), len(stripped)]
    return [" ".join(stripped[start:end]) for start, end in zip(bounds, bounds[1:])]


@dataclass
class FineWebQuality(RuleSet):
    """FineWeb's own rules (Penedo et al. 2024): share of lines ending in terminal punctuation,
    share of short lines, characters in duplicated lines, newlines per word."""

    name: ClassVar[str] = "fineweb"
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    line_punct_min_lines: int = 1  # not in datatrove (1 = always): fewer non-empty lines skip the rule
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3
    # Not in datatrove (0 = every line counts): a repeated line of at most this many characters
    # is not counted in `char_duplicates_ratio`. Short lines are what `short_line_thr` judges; a
    # news page that repeats a caption, "Advertisement" or a table header fails the 1% of
    # characters in duplicated lines while its prose is unique.
    dup_short_line_chars: int = 0
    # Not in datatrove (False = every line counts): the terminal-punctuation and short-line shares
    # count a hard-wrapped paragraph as one line (`join_hard_wrapped`). Book text wrapped at 70
    # columns ends most lines mid-sentence; as datatrove counts it, 101 of 469 Gutenberg parts fail
    # `line_punct_thr`.
    join_hard_wrapped_lines: bool = False

    def signal_types(self) -> dict[str, type]:
        return {"line_punct_frac": float, "short_line_frac": float, "dup_line_char_frac_nonl": float,
                "newline_word_ratio": float}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        lines = doc.nonempty_lines
        if not lines:
            return self.reject("empty", 0)
        units = join_hard_wrapped(lines) if self.join_hard_wrapped_lines else lines
        punct = signals["line_punct_frac"] = sum(line[-1] in TERMINAL_PUNCTUATION for line in units) / len(units)
        if (punct < self.line_punct_thr and len(units) >= self.line_punct_min_lines
                and not (punct == 0 and self.line_punct_exclude_zero)):
            return self.reject("line_punct_ratio", punct)
        short = signals["short_line_frac"] = sum(len(line) <= self.short_line_length for line in units) / len(units)
        if short > self.short_line_thr:
            return self.reject("short_line_ratio", short)
        dup = find_duplicates(lines, self.dup_short_line_chars)[1] / max(len(doc.text) - doc.text.count("\n"), 1)
        signals["dup_line_char_frac_nonl"] = dup
        if dup > self.char_duplicates_ratio:
            return self.reject("char_dup_ratio", dup)
        newlines = signals["newline_word_ratio"] = doc.text.count("\n") / max(doc.word_count, 1)
        if newlines > self.new_line_ratio:
            return self.reject("list_ratio", newlines)
        return None
