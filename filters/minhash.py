"""MinHash signatures for near-duplicate detection: normalization, shingles, signatures, LSH bands.

Pure document logic (no engine imports). The pieces, in the order a document meets them:

* Normalization. English (and every non-Chinese language) as FineWeb/datatrove's `simplify_text`:
  lowercase, numbers -> "0", punctuation -> space, whitespace collapsed, accents stripped.
  Chinese: Traditional -> Simplified, width folding and punctuation folding (`filters.normalize`),
  then the same lowercase/number/punctuation rules, so Traditional and Simplified copies of a page
  and copies that differ only in punctuation style produce the same shingles. The rules are
  regexes and OpenCC (`filters.fast_normalize.reference_words`/`reference_chinese`); what runs is
  a compiled pass over code points that gives byte-identical output at a fraction of the cost.
* Shingles. English: word 5-grams (FineWeb). Chinese: character n-grams or jieba word n-grams
  (`zh_tokens`). A document shorter than one shingle is shingled whole (one shingle), so two
  unrelated short documents share nothing.
* Hash. `shingle_hash32(shingle_utf8)`: a polynomial hash of the shingle's UTF-8 bytes modulo 2^64
  finished with the MurmurHash3 64-bit finalizer, top 32 bits. Being polynomial, the hash of any
  substring of a batch comes from two prefix sums, so one compiled pass (numba) hashes every
  shingle of a batch instead of one Python call each; `shingle_hash32` is the same function for
  one shingle, which makes `datasketch.MinHash(hashfunc=shingle_hash32)` an exact oracle.
* Signatures: datasketch's default "affine32" scheme (MurmurHash3 32-bit pre-mix, then
  a_k * h + b_k mod 2^32 with datasketch's permutation parameters for a seed), one compiled loop
  over a batch's shingles that keeps the running minimum in place (numpy would materialise a
  shingles x permutations matrix and pass over it three times).
* Bands: `optimal_bands` is datasketch's `_optimal_param` (the b x r minimising the weighted
  false-positive and false-negative areas); `band_hashes` turns a signature into one 64-bit bucket
  key per band.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Sequence

import numba
import numpy as np

from filters.fast_normalize import normalize_chinese, normalize_words

# ---------------------------------------------------------------------------------------------
# Normalization (filters.fast_normalize: the regex rules, reproduced in one compiled pass)


def is_chinese(lang: str | None) -> bool:
    return bool(lang) and (lang == "zh" or lang.startswith(("zh-", "zh_", "cmn")))


# ---------------------------------------------------------------------------------------------
# Tokens and shingles

ZhTokens = Literal["char", "word"]


@dataclass(frozen=True)
class Shingling:
    """How documents become shingles. Defaults: FineWeb's word 5-grams for English; Chinese
    character 5-grams (chosen by bench/dedup_quality.py, see docs/benchmarks.md)."""

    en_ngram: int = 5
    zh_tokens: ZhTokens = "char"
    zh_ngram: int = 5

    def __post_init__(self):
        if self.en_ngram < 1 or self.zh_ngram < 1:
            raise ValueError(f"n-gram sizes must be >= 1, got en_ngram={self.en_ngram}, zh_ngram={self.zh_ngram}")
        if self.zh_tokens not in ("char", "word"):
            raise ValueError(f"zh_tokens must be 'char' or 'word', got {self.zh_tokens!r}")

    def token_string(self, text: str | None, lang: str | None) -> tuple[str, bool]:
        """(tokens as one string, word_mode). Word mode: tokens separated by single spaces;
        character mode: every character is a token, no separators."""
        text = text or ""
        if not is_chinese(lang):
            return normalize_words(text), True
        folded = normalize_chinese(text)
        if self.zh_tokens == "char":
            return folded.replace(" ", ""), False
        return " ".join(t for t in _jieba_cut(folded) if not t.isspace()), True

    def ngram(self, lang: str | None) -> int:
        return self.zh_ngram if is_chinese(lang) else self.en_ngram

    def shingles(self, text: str | None, lang: str | None) -> list[str]:
        """The document's shingles as strings (the slow reference path; tests and baselines)."""
        tokens_str, word_mode = self.token_string(text, lang)
        tokens = tokens_str.split(" ") if word_mode else list(tokens_str)
        tokens = [t for t in tokens if t]
        n = self.ngram(lang)
        sep = " " if word_mode else ""
        if not tokens:
            return []
        if len(tokens) < n:
            return [sep.join(tokens)]
        return [sep.join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


_JIEBA = None


def _jieba_cut(text: str) -> list[str]:
    """jieba's precise mode without HMM (deterministic, ~1.6x faster); one tokenizer per process."""
    global _JIEBA
    if _JIEBA is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _JIEBA = jieba
    return _JIEBA.lcut(text, HMM=False)


# ---------------------------------------------------------------------------------------------
# The shingle hash

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_BASE = 0x100000001B3  # FNV-1 64-bit prime: odd, so invertible modulo 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def shingle_hash64(data: bytes) -> int:
    """sum((byte_j + 1) * BASE^j) mod 2^64, then MurmurHash3's fmix64. (+1 so NUL bytes count.)"""
    h, p = 0, 1
    for byte in data:
        h = (h + (byte + 1) * p) & _MASK64
        p = (p * _BASE) & _MASK64
    return _fmix64_int(h)


def shingle_hash32(data: bytes) -> int:
    """The 32-bit shingle hash fed to MinHash (pass it to datasketch as `hashfunc`)."""
    return shingle_hash64(data) >> 32


class _PowerTable:
    """BASE^j and BASE^-j modulo 2^64 for j < size, grown on demand and kept per process.
    Thread-safe (Beam's DirectRunner runs tasks in threads): readers get one consistent pair."""

    def __init__(self):
        self._tables = (np.ones(1, _U64), np.ones(1, _U64))
        self._lock = threading.Lock()

    def at_least(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self._tables
        if size <= len(tables[0]):
            return tables
        with self._lock:
            if size > len(self._tables[0]):
                size = max(size, 2 * len(self._tables[0]))
                with np.errstate(over="ignore"):
                    powers = np.cumprod(np.full(size, _BASE, _U64)) * _U64(_BASE_INV)  # BASE^0 .. BASE^(size-1)
                    inverse = np.cumprod(np.full(size, _BASE_INV, _U64)) * _U64(_BASE)
                self._tables = (powers, inverse)
            return self._tables


_POWERS = _PowerTable()


@dataclass
class ShingleBatch:
    """Every shingle of a batch of documents: `hashes64[i]` belongs to document `doc[i]` (sorted)."""

    hashes64: np.ndarray  # uint64, fmix64 of the polynomial hash
    doc: np.ndarray  # int64 document index within the batch, non-decreasing
    n_docs: int

    @property
    def hashes32(self) -> np.ndarray:
        return (self.hashes64 >> _U64(32)).astype(np.uint32)

    def counts(self) -> np.ndarray:
        return np.bincount(self.doc, minlength=self.n_docs)

    def distinct_sets(self) -> tuple[np.ndarray, np.ndarray]:
        """Each document's distinct 32-bit hashes, ascending as int32 (the verification's sets): (offsets,
        values), document d's set being values[offsets[d]:offsets[d + 1]]. Sorted per document, not as
        one array of (document, hash) keys: half the time."""
        values = np.empty(len(self.doc), np.int32)
        offsets = np.zeros(self.n_docs + 1, np.int64)
        written = _distinct_per_doc(self.hashes32.view(np.int32), self.doc, values, offsets)
        return offsets, values[:written]


@numba.njit(cache=True, nogil=True)
def _distinct_per_doc(values, doc, out_values, out_offsets):
    """The sorted distinct values of each run of equal `doc` (non-decreasing) into `out_values`;
    out_offsets[d + 1] = where document d's values end. Returns how many were written."""
    n = values.shape[0]
    i = written = 0
    while i < n:
        d = doc[i]
        j = i
        while j < n and doc[j] == d:
            j += 1
        run = np.sort(values[i:j])
        for k in range(run.shape[0]):
            if k == 0 or run[k] != run[k - 1]:
                out_values[written] = run[k]
                written += 1
        out_offsets[d + 1] = written
        i = j
    for d in range(1, out_offsets.shape[0]):  # documents without shingles end where the one before did
        out_offsets[d] = max(out_offsets[d], out_offsets[d - 1])
    return written


@numba.njit(cache=True, nogil=True)
def _fmix64_scalar(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@numba.njit(cache=True, nogil=True)
def _shingle_kernel(buf, doc_starts, doc_ends, word_mode, n, powers, inverse_powers, out_hash, out_doc):
    """Hash every shingle of every document in one pass; returns how many were written.

    Tokens: runs of non-space bytes (word mode) or UTF-8 characters other than space (character
    mode). A shingle is the byte span from the start of token i to the end of token i+n-1; its
    hash comes from prefix sums: (P[end] - P[start]) * BASE^-start, P[i] = sum_{j<i} (b_j+1) BASE^j,
    positions counted from the document's first byte (the power tables span the longest document,
    not the batch)."""
    longest = 0
    for d in range(doc_starts.shape[0]):
        longest = max(longest, doc_ends[d] - doc_starts[d])
    prefix = np.zeros(longest + 1, np.uint64)
    tok_start = np.empty(longest, np.int64)
    tok_end = np.empty(longest, np.int64)
    written = 0
    for d in range(doc_starts.shape[0]):
        first = doc_starts[d]
        acc = np.uint64(0)
        for i in range(first, doc_ends[d]):
            acc += (np.uint64(buf[i]) + np.uint64(1)) * powers[i - first]
            prefix[i - first + 1] = acc
        n_tok = 0
        i, end = first, doc_ends[d]
        while i < end:
            if buf[i] == 32:
                i += 1
                continue
            j = i + 1
            if word_mode:
                while j < end and buf[j] != 32:
                    j += 1
            else:
                while j < end and (buf[j] & 0xC0) == 0x80:
                    j += 1
            tok_start[n_tok] = i
            tok_end[n_tok] = j
            n_tok += 1
            i = j
        if n_tok == 0:
            continue
        count = n_tok - n + 1 if n_tok >= n else 1  # shorter than one shingle: shingled whole
        for k in range(count):
            s = tok_start[k] - first
            e = tok_end[min(k + n, n_tok) - 1] - first
            out_hash[written] = _fmix64_scalar((prefix[e] - prefix[s]) * inverse_powers[s])
            out_doc[written] = d
            written += 1
    return written


def shingle_batch(token_strings: Sequence[str], word_mode: bool, n: int) -> ShingleBatch:
    encoded = [s.encode("utf-8") for s in token_strings]
    lengths = np.array([len(e) for e in encoded], np.int64)
    doc_ends = np.cumsum(lengths)
    buf = np.frombuffer(b"".join(encoded), np.uint8)
    powers, inverse_powers = _POWERS.at_least(int(lengths.max(initial=0)) + 1)
    out_hash = np.empty(len(buf) + len(encoded), _U64)
    out_doc = np.empty(len(buf) + len(encoded), np.int64)
    written = _shingle_kernel(buf, doc_ends - lengths, doc_ends, word_mode, n, powers, inverse_powers,
                              out_hash, out_doc)
    return ShingleBatch(out_hash[:written], out_doc[:written], len(encoded))


# ---------------------------------------------------------------------------------------------
# Signatures


@numba.njit(cache=True, nogil=True)
def _min_affine32(hashes32, docs, a, b, sig):
    """sig[doc] = min over the doc's shingles of a * fmix32(h) + b mod 2^32 (datasketch's affine32)."""
    for i in range(hashes32.shape[0]):
        h = hashes32[i]
        h ^= h >> np.uint32(16)
        h = np.uint32(h * np.uint32(0x85EBCA6B))
        h ^= h >> np.uint32(13)
        h = np.uint32(h * np.uint32(0xC2B2AE35))
        h ^= h >> np.uint32(16)
        row = sig[docs[i]]
        for k in range(a.shape[0]):
            v = np.uint32(a[k] * h + b[k])
            if v < row[k]:
                row[k] = v


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for `num_perm` and `seed`."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


EMPTY_HASH = np.uint32(0xFFFFFFFF)  # a signature slot no shingle reached


class MinHasher:
    """Shingles and MinHash signatures of batches of documents.

    `signatures(texts, langs)` equals, row by row, `datasketch.MinHash(num_perm, seed,
    hashfunc=shingle_hash32)` updated with `shingling.shingles(text, lang)` encoded as UTF-8."""

    def __init__(self, num_perm: int = 128, seed: int = 1, shingling: Shingling = Shingling()):
        self.num_perm = num_perm
        self.seed = seed
        self.shingling = shingling
        self.a, self.b = permutations(num_perm, seed)

    def shingle_hashes(self, texts: Sequence[str | None], langs: Sequence[str | None]) -> ShingleBatch:
        """All shingle hashes of a batch, grouped by document (in input order)."""
        groups: dict[tuple[bool, int], list[int]] = {}
        token_strings = []
        for i, (text, lang) in enumerate(zip(texts, langs)):
            s, word_mode = self.shingling.token_string(text, lang)
            token_strings.append(s)
            groups.setdefault((word_mode, self.shingling.ngram(lang)), []).append(i)
        parts_h, parts_d = [], []
        for (word_mode, n), idx in sorted(groups.items()):
            sb = shingle_batch([token_strings[i] for i in idx], word_mode, n)
            parts_h.append(sb.hashes64)
            parts_d.append(np.asarray(idx, np.int64)[sb.doc])
        if not parts_h:
            return ShingleBatch(np.zeros(0, _U64), np.zeros(0, np.int64), len(token_strings))
        hashes, docs = np.concatenate(parts_h), np.concatenate(parts_d)
        order = np.argsort(docs, kind="stable")
        return ShingleBatch(hashes[order], docs[order], len(token_strings))

    def signatures_of(self, shingles: ShingleBatch) -> np.ndarray:
        """(n_docs, num_perm) uint32; a document without shingles keeps EMPTY_HASH everywhere."""
        sig = np.full((shingles.n_docs, self.num_perm), EMPTY_HASH, np.uint32)
        _min_affine32(shingles.hashes32, shingles.doc, self.a, self.b, sig)
        return sig

    def signatures(self, texts: Sequence[str | None], langs: Sequence[str | None]) -> np.ndarray:
        return self.signatures_of(self.shingle_hashes(texts, langs))


# ---------------------------------------------------------------------------------------------
# LSH bands


def _lsh_error_areas(threshold: float, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every (b, r) with b * r <= num_perm: the false-positive area (integral of the candidate
    probability 1-(1-s^r)^b over s in [0, threshold]) and the false-negative area (integral of its
    complement over [threshold, 1]), by 64-point Gauss-Legendre quadrature."""
    bands, rows = zip(*[(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    b = np.array(bands, float)[:, None]
    r = np.array(rows, float)[:, None]
    x, w = np.polynomial.legendre.leggauss(64)

    def area(lo: float, hi: float, positive: bool) -> np.ndarray:
        s = (hi - lo) / 2 * x + (hi + lo) / 2
        p = 1 - (1 - s[None, :] ** r) ** b
        return ((p if positive else 1 - p) * w).sum(axis=1) * (hi - lo) / 2

    return np.array(bands), np.array(rows), area(0.0, threshold, True), area(threshold, 1.0, False)


def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising fp_weight * FP area + fn_weight * FN area: datasketch's
    `MinHashLSH._optimal_param`, with the first (smallest b, then r) minimum winning ties like it."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    bands, rows, fp, fn = _lsh_error_areas(threshold, num_perm)
    best = int(np.argmin(fp * false_positive_weight + fn * false_negative_weight))
    return int(bands[best]), int(rows[best])


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) int64 bucket keys: a 64-bit hash of each band's `rows` signature values."""
    n = signatures.shape[0]
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations, "
                         f"the signatures have {signatures.shape[1]}")
    cells = signatures[:, :bands * rows].reshape(n, bands, rows).astype(_U64)
    with np.errstate(over="ignore"):
        h = np.full((n, bands), _U64(rows), _U64)
        for k in range(rows):
            h = (h ^ cells[:, :, k]) * _U64(_BASE)
        return _fmix64(h).view(np.int64)


# ---------------------------------------------------------------------------------------------
# Verification: the exact Jaccard similarity of two shingle sets


@numba.njit(cache=True, nogil=True)
def _common_counts(a_offsets, a_values, b_offsets, b_values, out):
    """out[i] = |A_i & B_i|, each set a sorted distinct run values[offsets[i]:offsets[i + 1]]: one merge."""
    for i in range(out.shape[0]):
        x, x_end = a_offsets[i], a_offsets[i + 1]
        y, y_end = b_offsets[i], b_offsets[i + 1]
        common = 0
        while x < x_end and y < y_end:
            if a_values[x] < b_values[y]:
                x += 1
            elif b_values[y] < a_values[x]:
                y += 1
            else:
                common += 1
                x += 1
                y += 1
        out[i] = common


def jaccard_at_least(a_offsets: np.ndarray, a_values: np.ndarray, b_offsets: np.ndarray, b_values: np.ndarray,
                     threshold: float) -> np.ndarray:
    """Whether each pair of sets (A_i, B_i) reaches Jaccard `threshold`, tested as
    |A & B| >= threshold * |A | B| (no division). Set i of a side is values[offsets[i]:offsets[i + 1]],
    sorted ascending and distinct (the signature table's shingle sets)."""
    common = np.empty(len(a_offsets) - 1, np.int64)
    _common_counts(a_offsets, a_values, b_offsets, b_values, common)
    return common >= threshold * (np.diff(a_offsets) + np.diff(b_offsets) - common)
