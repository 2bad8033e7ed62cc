"""PII detection: precision/recall per kind on identifiers planted in real prose, and throughput per
core against datatrove 0.10.1's PIIFormatter (emails and public IPv4, the same detection FineWeb ran).

    .venv/bin/python bench/pii.py [--data ../shared/data] [--docs 3000]

Quality: filters/pii_labelled.py plants generated identifiers (valid, and with broken check digits)
and look-alikes (dates, prices, ISBNs, version strings, order numbers) in sentences of the news,
Wikipedia and speech files. Throughput: every document of ../shared/data/text and the ChineseWebText
sample, one process, CPU seconds; ours with only email+ip (datatrove's scope) and with every kind.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from filters.pii import PIIAnonymizer, find_pii  # noqa: E402
from filters.pii_labelled import CHECKSUM_KINDS, host_sentences, planted_documents, score  # noqa: E402


def corpus(data: Path) -> list[str]:
    texts = []
    for path in sorted((data / "text").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    with open(data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["raw_content"] for line in f]
    return texts


def cpu_seconds(fn, texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for t in texts:
            fn(t)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--docs", type=int, default=3000, help="planted documents (default 3000)")
    ap.add_argument("--repeat", type=int, default=3, help="throughput: best of N passes")
    args = ap.parse_args()

    docs = planted_documents(host_sentences(args.data), args.docs, seed=2024)
    scores, touched = score(docs, find_pii)
    print(f"planted set: {args.docs} documents, look-alikes altered: {touched}")
    print(f"{'kind':<10} {'planted':>8} {'precision':>9} {'recall':>7}  target")
    for kind, s in sorted(scores.items()):
        target = "0.99/0.95" if kind in CHECKSUM_KINDS else "0.95/0.90"
        print(f"{kind:<10} {s.tp + s.fn:>8} {s.precision:>9.4f} {s.recall:>7.4f}  {target}")

    from datatrove.pipeline.formatters import PIIFormatter

    texts = corpus(args.data)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    baseline = PIIFormatter()
    runs = {
        "datatrove PIIFormatter (email, ip)": baseline.format,
        "ours, email + ip": PIIAnonymizer(kinds=("email", "ip")).anonymize,
        "ours, every kind": PIIAnonymizer().anonymize,
    }
    seconds = {name: cpu_seconds(fn, texts, args.repeat) for name, fn in runs.items()}
    base = seconds["datatrove PIIFormatter (email, ip)"]
    print(f"\nthroughput on {len(texts)} real documents, {mb:.1f} MB, one core (best of {args.repeat}):")
    for name, s in seconds.items():
        print(f"{name:<36} {mb / s:6.1f} MB/s  {base / s:5.2f}x datatrove")


if __name__ == "__main__":
    main()
