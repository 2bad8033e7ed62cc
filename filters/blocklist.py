"""Blocklists: URL domains and URLs, words in URLs, and words in the text.

The lists are data the user configures (`quality.url_blocklists`, `quality.word_blocklists`, ...);
the shipped defaults in filters/data/ are (filters/data/NOTICE.md gives sources and licences):
- the UT1 blacklist as datatrove 0.10.1 ships it for FineWeb's URL filter (4.56 million domains and
  19.6 thousand URLs), zstd-compressed;
- datatrove's banned, soft-banned and banned-sub words for URLs (FineWeb's URLFilter);
- English words for the text (datatrove's banned words and phrases), and the project's lists.

URL matching is FineWeb's: a URL is blocked when its host is a listed domain or a subdomain of one,
when the URL itself is listed, when a word of the URL (split at non-alphanumerics) is a banned word,
when at least two are soft-banned words, or when the URL with non-alphanumerics removed contains a
banned sub-word. Millions of domains are held as sorted 64-bit hashes (`HashedNames`: about 35 MB
per worker for UT1, where a Python set of the strings takes several hundred).

Word matching in the text is case-insensitive; a Latin entry matches as a whole word (so "essex"
never matches "sex"), where a word ends at anything that is not a Latin letter or digit, CJK
characters included ("yabo" matches in "yabo手机版"); an entry with CJK characters matches anywhere.
"""
from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from operator import methodcaller
from typing import ClassVar, Iterable, Iterator
from urllib.parse import urlsplit

import numba
import numpy as np

from filters.repetition import _MIX, Doc, Rejection, RuleSet, Signals, code_points

_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def decompressed_chunks(name: str, raw: bytes, size: int = 1 << 24) -> Iterator[bytes]:
    """The bytes of a list file in pieces of about `size`, decompressed when its name ends in .zst
    or .gz (the 124 MB of UT1's domains never need to be in memory at once)."""
    if name.endswith(".zst"):
        import zstandard

        # the shipped UT1 list is compressed with a 128 MiB window (zstd --long=27)
        stream = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(io.BytesIO(raw))
    elif name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=io.BytesIO(raw))
    else:
        yield raw
        return
    while chunk := stream.read(size):
        yield chunk


def decompressed(name: str, raw: bytes) -> bytes:
    return b"".join(decompressed_chunks(name, raw))


def read_word_list(lines: Iterable[str]) -> list[str]:
    """Entries of a word-list file: stripped lines, without blank lines and `#` comments."""
    entries = []
    for line in lines:
        entry = line.split("#", 1)[0].strip() if not line.lstrip().startswith("re:") else line.strip()
        if entry:
            entries.append(entry)
    return entries


def trie_regex(words: Iterable[str]) -> str:
    """An alternation of the literal `words` shaped as a trie ("ab(?:c|d)" for abc, abd), longest
    match first: the regex engine tries one branch per character instead of every word at every
    position, which is what makes lists of hundreds of entries affordable."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def word_pattern(words: Iterable[str]) -> re.Pattern:
    """One case-insensitive pattern: whole-word matching for Latin entries, substring matching for
    CJK ones, longest first; entries written `re:<regex>` are regular expressions."""
    latin, cjk, parts = set(), set(), []
    for w in words:
        if w.startswith("re:"):
            parts.append(f"(?:{w[3:]})")
        else:
            (cjk if _CJK.search(w) else latin).add(w.lower())
    if latin:
        # Latin words end where Latin letters and digits do (a CJK character next to one is a boundary).
        parts.append(r"(?<![a-z0-9])(?:" + trie_regex(latin) + r")(?![a-z0-9])")
    if cjk:
        parts.append(trie_regex(cjk))
    return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)


_TOKEN = re.compile("[a-z0-9]+")


@numba.njit(cache=True, nogil=True, inline="always")
def _lowered(point):
    """A code point as the compiled passes below compare it with the lower-cased entries: ASCII
    lower-cased, and the four non-ASCII letters Python's re matches with ASCII ones under
    IGNORECASE (İ ı ſ K, its documentation lists them) folded to those, so that the pre-check
    stays a superset of the pattern; every other character is itself. Entries hold
    ASCII and caseless characters only (`_caseless_or_ascii`), and the lower case of any other
    cased character holds neither (İ aside, whose is "i" and a combining dot), so no entry can
    match the character or its lower case: `str.lower` and this find the same entries."""
    if point < 128:
        return point + 32 if 65 <= point <= 90 else point
    if point == 0x130 or point == 0x131:
        return 105  # "i"
    if point == 0x17F:
        return 115  # "s"
    return 107 if point == 0x212A else point  # "k"


class WordMatcher:
    """Counts the matches of `word_pattern(words)` in a text.

    The case-insensitive pattern with its word-boundary look-behind is the slow part, and almost no
    document contains an entry at all: a plain search of the lower-cased entries in the lower-cased
    text, and of each `re:` entry on its own (a match of the pattern is a match of one of its
    alternatives), rules those out first. It can only be wrong the safe way (a hit it finds may
    fail the boundary), so counts are the pattern's own. With every entry letter ASCII or caseless
    (Han, kana) the pre-check is exact; otherwise every text goes to the pattern.
    Lists of single Latin words only (FineWeb's soft words: "ass", "sex", found inside most
    English texts, so the pre-check rarely rules one out) are counted by looking up the text's
    runs of letters and digits in a set, which is what the whole-word pattern matches."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        self.pattern = word_pattern(words)
        expressions = [w[3:] for w in words if w.startswith("re:")]
        literals = {w.lower() for w in words if not w.startswith("re:")}
        self._checkable = bool(words) and all(map(_caseless_or_ascii, literals))
        # an expression matching a few strings only (`(?:体育|彩票)(?:app|官网)`) is pre-checked as
        # those strings, in the same pass as the literals: searched on its own, it scanned every text
        expanded = {e: _matched_strings(e) for e in expressions}
        expanded = {e: {m.lower() for m in s} for e, s in expanded.items() if s and all(map(_caseless_or_ascii, s))}
        searched = set(literals).union(*expanded.values())
        # the whole-word pattern matches a Latin entry only where a word begins: inside a word (most
        # positions of an English text) the pre-check looks for the other entries alone
        inside = searched - {w for w in literals if not _CJK.search(w)}
        self._literals = _Literals(searched, inside) if self._checkable and searched else None
        self._expressions = [re.compile(e, re.IGNORECASE) for e in expressions if e not in expanded] \
            if self._checkable else []
        tokens = self._literals is not None and not expressions and all(map(_TOKEN.fullmatch, literals))
        self._tokens = _TokenSet(literals) if tokens else None

    def count(self, text: str) -> int:
        if self._checkable:
            if self._tokens is not None:
                return self._tokens.count(text)
            # the pattern's first match starts where the first entry or expression is found, or later
            starts = [m.start() for m in map(methodcaller("search", text), self._expressions) if m]
            if self._literals is not None and (start := self._literals.first_at(text)) >= 0:
                starts.append(start)
            if not starts:
                return 0
            return sum(1 for _ in self.pattern.finditer(text, min(starts)))
        return sum(1 for _ in self.pattern.finditer(text))


def _caseless_or_ascii(literal: str) -> bool:
    """Whether lower-casing a text (the four letters above folded) finds every case-insensitive
    match of `literal` as its lower case."""
    return all(c.isascii() or c.lower() == c == c.upper() for c in literal)


def _matched_strings(expression: str, limit: int = 4096) -> list[str] | None:
    """Every string `expression` matches, when it is made of characters, alternatives, groups and
    sets of characters only, with at most `limit` strings; else None."""
    from re import _parser  # the parser re compiles with

    def strings(items) -> list[str] | None:
        out = [""]
        for op, arg in items:
            if op is _parser.LITERAL:
                options = [chr(arg)]
            elif op is _parser.BRANCH:
                options = [strings(branch) for branch in arg[1]]
                options = None if None in options else [s for branch in options for s in branch]
            elif op is _parser.SUBPATTERN and not arg[1] and not arg[2]:  # no flags set inside
                options = strings(arg[3])
            elif op is _parser.IN and all(kind is _parser.LITERAL for kind, _ in arg):
                options = [chr(point) for _, point in arg]
            else:
                return None
            if options is None or len(out) * len(options) > limit:
                return None
            out = [a + b for a in out for b in options]
        return out

    return strings(_parser.parse(expression))


class _Literals:
    """Whether a lower-cased text holds one of `literals` (lower-cased too) as a substring: one
    compiled pass over its code points, where the literals' alternation, tried at every position
    of a Chinese text (most characters begin some entry), cost 5 times as much. A position is
    looked up by its first three characters (fewer for shorter literals); only the literals that
    begin with them are compared in full. Inside a word (after a Latin letter or digit, lowered as
    `_lowered` does) only positions where one of `inside` begins are looked at (None: all literals)."""

    def __init__(self, literals: Iterable[str], inside: Iterable[str] | None = None):
        self.any_text = "" in literals  # the empty literal is in every text
        literals = sorted((w for w in literals if w), key=_literal_key)
        inside = set(literals if inside is None else inside)
        # per first character: 1 alone, 2 pairs, 4 triples; times 8 for those looked for inside words
        self.firsts = np.zeros(0x110000, np.uint8)
        for literal in literals:
            self.firsts[ord(literal[0])] |= 1 << (min(len(literal), 3) - 1 + 3 * (literal in inside))
        self.keys = np.array([_literal_key(w) for w in literals], np.uint64)
        self.key_bits = np.zeros(1 << 16, np.bool_)  # a filter before the binary search: most starts are no key
        self.key_bits[_key_bit(self.keys)] = True
        self.lengths = np.array([len(w) for w in literals], np.int64)
        self.chars = np.zeros((len(literals), max(self.lengths, default=0)), np.uint32)
        for i, literal in enumerate(literals):
            self.chars[i, :len(literal)] = list(map(ord, literal))

    def first_at(self, text: str) -> int:
        """Where the first of the literals begins in `text`, lower-cased (`_lowered`); -1 for none."""
        return 0 if self.any_text else int(_first_literal(code_points(text), self.firsts, self.key_bits, self.keys,
                                                          self.lengths, self.chars))


def _literal_key(literal: str) -> int:
    return int(_start_key(np.array(list(map(ord, literal[:3])), np.uint32)))


@numba.njit(cache=True, nogil=True, inline="always")
def _start_key(points):
    """One number for up to three code points, 21 bits each (one more than the code point, so
    that lengths differ too)."""
    key = np.uint64(0)
    for p in points:
        key = key << np.uint64(21) | np.uint64(p + 1)
    return key


@numba.njit(cache=True, nogil=True)
def _key_bit(key):
    return (key * _MIX) >> np.uint64(48)


@numba.njit(cache=True, nogil=True)
def _first_literal(points, firsts, key_bits, keys, lengths, chars):
    size = points.shape[0]
    point = 0  # the previous code point, lowered
    for i in range(size):
        previous, point = point, _lowered(points[i])
        kinds = np.int64(firsts[point])
        if not kinds:
            continue
        kinds = kinds >> 3 if 97 <= previous <= 122 or 48 <= previous <= 57 else (kinds | kinds >> 3) & 7
        if not kinds:
            continue
        key = np.uint64(0)
        for start in range(1, min(3, size - i) + 1):
            key = key << np.uint64(21) | np.uint64(_lowered(points[i + start - 1]) + 1)  # as _start_key
            if not kinds & (1 << (start - 1)) or not key_bits[_key_bit(key)]:
                continue
            j = np.searchsorted(keys, key)
            while j < keys.shape[0] and keys[j] == key:
                length = lengths[j]
                if i + length <= size:
                    same = True
                    for k in range(start, length):
                        if chars[j, k] != _lowered(points[i + k]):
                            same = False
                            break
                    if same:
                        return i
                j += 1
    return -1


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


class _TokenSet:
    """Counts the runs of [a-z0-9] in a text lower-cased (`_lowered`) that are among `words`
    (each such a run): `sum(map(words.__contains__, re.findall("[a-z0-9]+", text)))` in one compiled
    pass over the text's code points (shared with the other word lists), without a string per run.
    A run is looked up by its 64-bit FNV-1a hash (first in a bit table of the hashes, which rules
    out most runs without the binary search) and then compared byte by byte."""

    def __init__(self, words: Iterable[str]):
        encoded = sorted({w.encode("ascii") for w in words}, key=_fnv1a)
        self.hashes = np.array([_fnv1a(w) for w in encoded], np.uint64)
        if len(np.unique(self.hashes)) != len(self.hashes):
            raise ValueError("two listed words share a 64-bit hash")  # never seen; the compare needs one per hash
        self.hash_bits = np.zeros(1 << 16, np.bool_)
        self.hash_bits[_key_bit(self.hashes)] = True
        self.lengths = np.array([len(w) for w in encoded], np.int64)
        self.words = np.zeros((len(encoded), max(self.lengths, default=0)), np.uint8)
        for i, w in enumerate(encoded):
            self.words[i, :len(w)] = np.frombuffer(w, np.uint8)

    def count(self, text: str) -> int:
        if not len(self.hashes):
            return 0
        return int(_count_listed_runs(code_points(text), self.hash_bits, self.hashes, self.lengths, self.words))


def _fnv1a(word: bytes) -> int:
    h = int(_FNV_OFFSET)
    for byte in word:
        h = ((h ^ byte) * int(_FNV_PRIME)) & 0xFFFFFFFFFFFFFFFF
    return h


@numba.njit(cache=True, nogil=True)
def _count_listed_runs(data, hash_bits, hashes, lengths, words):
    longest = words.shape[1]
    count, i, n = 0, 0, data.shape[0]
    while i < n:
        c = _lowered(data[i])
        if not (97 <= c <= 122 or 48 <= c <= 57):
            i += 1
            continue
        start, h = i, _FNV_OFFSET
        while i < n and (97 <= c <= 122 or 48 <= c <= 57):
            h = (h ^ np.uint64(c)) * _FNV_PRIME
            i += 1
            if i < n:
                c = _lowered(data[i])
        if i - start > longest or not hash_bits[_key_bit(h)]:
            continue
        j = np.searchsorted(hashes, h)
        if j < hashes.shape[0] and hashes[j] == h and lengths[j] == i - start:
            same = True
            for k in range(i - start):
                if words[j, k] != _lowered(data[start + k]):
                    same = False
                    break
            count += same
    return count


@dataclass
class WordBlocklist(RuleSet):
    """Rejects a document with at least `min_hits` occurrences of blocklisted words (C4 dropped a
    page on one; one stray mention in a news report or a quoted insult is common enough to ask for
    more). `soft_words` (words with innocent uses: "nude", "escort") are counted, never fatal:
    the count is a signal for the user and for q_score."""

    name: ClassVar[str] = "blocklist"
    words: list[str] = field(default_factory=list)
    soft_words: list[str] = field(default_factory=list)
    min_hits: int = 2

    def __post_init__(self):
        self._matcher = WordMatcher(self.words)
        self._soft_matcher = WordMatcher(self.soft_words)

    def signal_types(self) -> dict[str, type]:
        return {"blocklist_word_hits": int, "soft_word_hits": int}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        hits = signals["blocklist_word_hits"] = self._matcher.count(doc.text)
        signals["soft_word_hits"] = self._soft_matcher.count(doc.text)
        if self.min_hits and hits >= self.min_hits:
            return self.reject("word", hits)
        return None


# ---------------------------------------------------------------------------------------------
# URLs

def _hashes(lines: Iterable[bytes]) -> np.ndarray:
    # Python's own hash of bytes (SipHash, in C): salted per process, which is all a set built
    # and queried in the same worker needs.
    return np.fromiter(map(hash, lines), np.int64)


def _line_hashes(blob: bytes) -> np.ndarray:
    if any(marker in blob for marker in (b"#", b"\r", b" ", b"\t")) or blob != blob.lower():
        blob = "\n".join(e.lower() for e in read_word_list(blob.decode("utf-8").splitlines())).encode("utf-8")
    return _hashes(filter(None, blob.split(b"\n")))


class HashedNames:
    """A set of names (domains, URLs) as sorted unique 64-bit hashes (8 bytes a name, against
    some 80 for a str in a Python set). A name not in the set is taken for one with probability
    about len(set) / 2**64 (2.5e-13 for UT1's 4.6 million domains)."""

    def __init__(self, hashes: np.ndarray):
        hashes = np.sort(hashes)  # np.unique is some 20x slower on millions of int64 (NumPy 2)
        self._hashes = hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))] if len(hashes) else hashes

    @classmethod
    def from_lines(cls, blob: bytes) -> "HashedNames":
        """From a list file's bytes: one lower-case name a line; files with `#` comments, blank or
        indented lines or upper case go through `read_word_list` first."""
        return cls.from_chunks([blob])

    @classmethod
    def from_chunks(cls, chunks: Iterable[bytes]) -> "HashedNames":
        """From a list file's bytes in pieces (split anywhere), hashed piece by piece."""
        parts, rest = [], b""
        for chunk in chunks:
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            parts.append(_line_hashes(chunk[:cut]))
        parts.append(_line_hashes(rest))
        return cls(np.concatenate(parts))

    def __len__(self) -> int:
        return len(self._hashes)

    def __reduce__(self):
        # Salted per process (`_hashes`): a copy in another process would silently match nothing.
        raise TypeError("HashedNames holds hashes salted per process: build it in the process that queries it")

    def first_match(self, names: list[str]) -> int | None:
        """The index of the first of `names` in the set, or None."""
        if not names or not len(self._hashes):
            return None
        hashes = _hashes(name.encode("utf-8", "surrogatepass") for name in names)
        at = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        found = np.flatnonzero(self._hashes[at] == hashes)
        return int(found[0]) if len(found) else None


def url_host(url: str | None) -> str:
    """The lower-case host name of a URL ('' when there is none), without a final dot."""
    if not url:
        return ""
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


def url_key(url: str) -> str:
    """A URL as the URL lists hold them: lower case, without scheme and `www.` (UT1 lists URLs
    without a scheme; the shipped copy is lower-cased and without `www.` too)."""
    return url.split("://", 1)[-1].lower().removeprefix("www.")


_NOT_ALNUM = re.compile("[^a-zA-Z0-9]+")


@dataclass
class UrlBlocklist(RuleSet):
    """FineWeb's URL filter (datatrove's URLFilter): listed domains (with their subdomains) and
    URLs; banned words among the URL's words; `soft_word_threshold` soft-banned words; banned
    sub-words in the URL with everything but letters and digits removed (datatrove's
    normalisation). Words are compared lower-cased (datatrove compares the URL's words as they
    are, so an upper-case banned word passes it)."""

    name: ClassVar[str] = "blocklist"
    domains: HashedNames = field(default_factory=lambda: HashedNames(np.zeros(0, np.int64)))
    urls: HashedNames = field(default_factory=lambda: HashedNames(np.zeros(0, np.int64)))
    banned_words: list[str] = field(default_factory=list)
    soft_words: list[str] = field(default_factory=list)
    soft_word_threshold: int = 2
    banned_subwords: list[str] = field(default_factory=list)
    host_terms: list[str] = field(default_factory=list)  # the host name containing one is blocked

    def __post_init__(self):
        normalize = lambda words: {_NOT_ALNUM.sub("", w).lower() for w in words} - {""}  # noqa: E731
        self._banned = normalize(self.banned_words)
        self._soft = normalize(self.soft_words)
        subwords = normalize(self.banned_subwords)
        self._subwords = re.compile(trie_regex(subwords)) if subwords else None
        self._host_terms = tuple(t.lower() for t in self.host_terms)

    def signal_types(self) -> dict[str, type]:
        return {}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        url = doc.url
        host = url_host(url)
        if not host:
            return None
        labels = host.split(".")
        suffixes = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [host]
        found = self.domains.first_match(suffixes)
        if found is not None:
            return self.reject("url_domain", suffixes[found])
        if self.urls.first_match([url_key(url)]) is not None:
            return self.reject("url", host)
        for term in self._host_terms:
            if term in host:
                return self.reject("url_term", host)
        words = set(_NOT_ALNUM.split(url.lower()))
        banned = words & self._banned
        if banned:
            return self.reject("url_word", min(banned))
        soft = words & self._soft
        if self.soft_word_threshold and len(soft) >= self.soft_word_threshold:
            return self.reject("url_soft_words", len(soft))
        if self._subwords is not None:
            match = self._subwords.search(_NOT_ALNUM.sub("", url).lower())
            if match:
                return self.reject("url_subword", match.group())
        return None
