"""How much memory does SentencePiece need per MB of training sample? (docs/scaling.md sizes the
tokenizer machine for GLM-130B's 25 GB sample from this.)

Writes a sample of distinct lines (2-6 random real sentences of ../shared/data each, half English and
half Chinese bytes; SentencePiece folds identical pieces of text, so repeated lines would understate
the memory), then trains the project's tokenizer (tokenizer/train.py) on it in a fresh process and
prints that process's peak resident memory.

    .venv/bin/python bench/tokenizer_memory.py --mb 20 80 [--vocab-size 32000] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from dedup_quality import load_documents  # noqa: E402
from tokenizer.train import write_training_lines  # noqa: E402

SENTENCE_END = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}
MAX_LINE_BYTES = 8192

# Runs in the child: only the training counts towards its peak.
TRAIN_AND_MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from tokenizer.train import TrainSettings, train
start = time.time()
train(TrainSettings(vocab_size={vocab}, num_threads={threads}), {sample!r})
print(json.dumps({{"seconds": time.time() - start,
                   "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_sample(path: Path, megabytes: float, seed: int = 1234) -> tuple[int, int]:
    """Distinct lines until each language has megabytes/2 of UTF-8; returns (bytes, lines)."""
    sentences = {lang: [s.strip() for text in texts for paragraph in text.split("\n")
                        for s in SENTENCE_END[lang].split(paragraph) if len(s.strip()) >= 10]
                 for lang, texts in load_documents().items()}
    rng, seen, written = random.Random(seed), set(), {"en": 0, "zh": 0}
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        while min(written.values()) < megabytes * 1e6 / 2:
            lang = min(written, key=written.get)
            joiner = " " if lang == "en" else ""
            line = joiner.join(rng.choice(sentences[lang]) for _ in range(rng.randint(2, 6)))
            if line not in seen:
                seen.add(line)
                written[lang] += write_training_lines(line, f, MAX_LINE_BYTES)
    return sum(written.values()), len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, nargs="+", default=[20, 80], help="sample sizes in MB (default 20 80)")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in args.mb:
            sample = Path(tmp) / f"sample-{megabytes:g}.txt"
            nbytes, lines = write_sample(sample, megabytes)
            child = subprocess.run([sys.executable, "-c", TRAIN_AND_MEASURE.format(
                repo=str(REPO), vocab=args.vocab_size, threads=args.threads, sample=str(sample))],
                capture_output=True, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((nbytes / 1e6, lines, result["peak_mb"], result["seconds"]))
            print(f"{nbytes / 1e6:.1f} MB sample ({lines:,} lines, mean {nbytes / lines:.0f} bytes), vocab "
                  f"{args.vocab_size}: peak RSS {result['peak_mb']:,.0f} MB, {result['seconds']:.0f} s", flush=True)
    if len(rows) >= 2:
        (mb_a, _, peak_a, _), (mb_b, _, peak_b, _) = rows[0], rows[-1]
        slope = (peak_b - peak_a) / (mb_b - mb_a)
        print(f"{slope:.1f} MB of memory per MB of sample, plus {peak_a - slope * mb_a:.0f} MB")


if __name__ == "__main__":
    main()
