"""CCNet-style perplexity (Wenzek et al. 2020): a character n-gram language model per language,
trained on clean prose; a document's perplexity under it says how much it reads like that prose.

CCNet used a KenLM word 5-gram model on SentencePiece pieces of Wikipedia. Here the model is a
hashed character n-gram model (orders 1..`order`, counts in `buckets` hash buckets per order,
interpolated with weights that grow with the context's count), so it needs no tokenizer, trains in
seconds with NumPy and fits in a few MB. Text is normalised first as CCNet does: lower case,
digits to 0, runs of whitespace to one space.

`score` maps a perplexity to [0, 1] by its rank among held-out training documents' perplexities
(1 = lower than all of them), stored in the model as quantiles; CCNet's head/middle/tail buckets are
the thirds of that rank.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
_CONTEXT_WEIGHT = 3.0  # an order's weight is ctx / (ctx + this): trust a context seen a few times


def normalize(text: str) -> str:
    return _SPACE.sub(" ", _DIGIT.sub("0", text.lower())).strip()


def _ngram_hashes(text: str, order: int) -> list[np.ndarray]:
    """hashes[k-1][i]: hash of the (k)-gram ending at character i (positions i >= k-1 only valid)."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64)
    hashes = [points * _MIX]
    with np.errstate(over="ignore"):
        for _ in range(1, order):
            previous = hashes[-1]
            extended = np.zeros_like(previous)
            extended[1:] = (previous[:-1] ^ (previous[:-1] >> np.uint64(29))) * _MIX + points[1:]
            hashes.append(extended)
    return hashes


@dataclass
class CharNgramLM:
    counts: np.ndarray  # (order, buckets) n-gram counts, saturated at 65535
    vocabulary: int  # distinct characters seen in training
    quantiles: np.ndarray  # 101 quantiles of the training documents' log-perplexities

    @property
    def order(self) -> int:
        return self.counts.shape[0]

    def log_perplexity(self, text: str) -> float:
        """Mean negative log probability per character of the normalised text."""
        text = normalize(text)
        if not text:
            return float("inf")
        buckets = np.uint64(self.counts.shape[1])
        hashes = _ngram_hashes(text, self.order)
        counts = self.counts.astype(np.float64)
        n = len(text)
        total = counts[0].sum()
        prob = (counts[0][(hashes[0] % buckets).astype(np.int64)] + 1.0) / (total + self.vocabulary + 1)
        for k in range(1, self.order):
            valid = np.arange(n) >= k
            context = np.zeros(n)
            context[1:] = counts[k - 1][(hashes[k - 1][:-1] % buckets).astype(np.int64)]
            joint = np.minimum(counts[k][(hashes[k] % buckets).astype(np.int64)], context)
            weight = np.where(valid & (context > 0), context / (context + _CONTEXT_WEIGHT), 0.0)
            prob = weight * joint / np.maximum(context, 1.0) + (1.0 - weight) * prob
        return float(-np.log(prob).mean())

    def perplexity(self, text: str) -> float:
        return float(np.exp(min(self.log_perplexity(text), 700.0)))

    def score(self, text: str) -> float:
        """Share of the training documents whose perplexity is higher (in [0, 1])."""
        return float(1.0 - np.searchsorted(self.quantiles, self.log_perplexity(text)) / len(self.quantiles))

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(f, counts=self.counts, vocabulary=np.array(self.vocabulary),
                                quantiles=self.quantiles)

    @classmethod
    def load(cls, path: str) -> "CharNgramLM":
        with np.load(path) as data:
            return cls(data["counts"], int(data["vocabulary"]), data["quantiles"])


def train(texts: Iterable[str], order: int = 5, buckets: int = 1 << 18, holdout_every: int = 10) -> CharNgramLM:
    """Count the n-grams of the (normalised) texts; every `holdout_every`-th text is held out of
    the counts and gives the perplexity quantiles instead (in-sample perplexities would be too low
    to rank unseen documents against). The same texts in the same order give the same model."""
    if order < 1 or buckets < 1:
        raise ValueError(f"order and buckets must be >= 1, got order {order}, buckets {buckets}")
    texts = [t for t in map(normalize, texts) if t]
    if not texts:
        raise ValueError("need at least one non-empty training text")
    held = [t for i, t in enumerate(texts) if holdout_every and i % holdout_every == holdout_every - 1]
    texts = [t for i, t in enumerate(texts) if not (holdout_every and i % holdout_every == holdout_every - 1)]
    per_order: list[list[np.ndarray]] = [[] for _ in range(order)]
    characters: set[str] = set()
    for text in texts:
        characters.update(text)
        for k, hashes in enumerate(_ngram_hashes(text, order)):
            per_order[k].append((hashes[k:] % np.uint64(buckets)).astype(np.int64))
    counts = np.stack([np.bincount(np.concatenate(h), minlength=buckets) for h in per_order])
    model = CharNgramLM(np.minimum(counts, 65535).astype(np.uint16), len(characters), np.zeros(0))
    model.quantiles = np.quantile([model.log_perplexity(t) for t in held or texts], np.linspace(0, 1, 101))
    return model


@functools.lru_cache(maxsize=8)
def load_model(path: str) -> CharNgramLM:
    """A model file, loaded once per process."""
    return CharNgramLM.load(path)
