"""Does one shared EN/ZH vocabulary cost either language much? The balanced tokenizer against an
English-only and a Chinese-only tokenizer of the same vocabulary size, all three trained with the
project's settings (tokenizer/train.py) on the same documents of ../shared/data/text and measured on
held-out documents (every tenth by a hash of the document id).

Target (issue 5): balanced bytes/token within 10% of the monolingual one on its own language.

    .venv/bin/python bench/tokenizer_balance.py [--vocab-size 24000] [--model-type unigram]

Sizes up to about 28k: on the 3.6 MB of English here SentencePiece cannot make an English-only
unigram model of more pieces (it refuses 32k).

`--normalize-chinese` first normalizes the Chinese documents as the langid stage does by default
(Traditional to Simplified, full-width folding, whitespace): the text the pipeline's tokenizer sees.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tokenizer.evaluate import evaluate  # noqa: E402
from tokenizer.spm import load_proto  # noqa: E402
from tokenizer.train import TrainSettings, train, write_training_lines  # noqa: E402

TEXT = REPO.parent / "shared" / "data" / "text"
TARGET_RATIO = 0.9  # balanced bytes/token at least 90% of the monolingual figure


def load_docs(text_dir: Path, normalize_chinese: bool = False) -> dict[str, dict[str, list[str]]]:
    """{'train'|'heldout': {lang: [text, ...]}} in the order of a hash of the document id (so a
    byte budget takes from every file); held out: every tenth document by that hash."""
    from filters.normalize import normalize_chinese as langid_normalization

    split: dict[str, dict[str, list[tuple[int, str]]]] = {"train": {}, "heldout": {}}
    for path in sorted(text_dir.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            doc = json.loads(line)
            h = int(hashlib.sha1(doc["id"].encode()).hexdigest(), 16)
            text = langid_normalization(doc["text"]) if normalize_chinese and doc["lang"] == "zh" else doc["text"]
            split["heldout" if h % 10 == 0 else "train"].setdefault(doc["lang"], []).append((h, text))
    return {part: {lang: [t for _, t in sorted(docs)] for lang, docs in langs.items()} for part, langs in split.items()}


def take_bytes(texts: list[str], budget: int) -> list[str]:
    out, used = [], 0
    for t in texts:
        if used >= budget:
            break
        out.append(t)
        used += len(t.encode())
    return out


def train_on(texts: list[str], settings: TrainSettings, workdir: Path, name: str):
    input_file = workdir / f"{name}.txt"
    with input_file.open("w", encoding="utf-8") as f:
        for t in texts:
            write_training_lines(t, f, settings.max_line_bytes)
    return load_proto(train(settings, str(input_file)))


def compare(text_dir: Path, settings: TrainSettings, workdir: Path, bytes_per_language: int | None = None,
            en_share: float = 0.5, normalize_chinese: bool = False) -> dict:
    """bytes/token on held-out English and Chinese for the balanced and both monolingual tokenizers.
    Each monolingual tokenizer trains on the same documents of its language as the balanced one;
    `en_share` is English's part of the balanced sample's bytes (tokenizer.language_shares.en)."""
    docs = load_docs(text_dir, normalize_chinese)
    train_docs = docs["train"]
    budget = min(sum(len(t.encode()) for t in train_docs[lang]) for lang in ("en", "zh"))
    if bytes_per_language:
        budget = min(budget, bytes_per_language)
    shares = {"en": en_share, "zh": 1 - en_share}
    sample = {lang: take_bytes(train_docs[lang], budget * shares[lang] / max(shares.values())) for lang in ("en", "zh")}
    tokenizers = {
        "balanced": train_on(sample["en"] + sample["zh"], settings, workdir, "balanced"),
        "en_only": train_on(sample["en"], settings, workdir, "en_only"),
        "zh_only": train_on(sample["zh"], settings, workdir, "zh_only"),
    }
    heldout = [(lang, t) for lang in ("en", "zh") for t in docs["heldout"][lang]]
    result = {name: evaluate(tok, heldout) for name, tok in tokenizers.items()}
    rows = {}
    for lang, mono in (("en", "en_only"), ("zh", "zh_only")):
        balanced = result["balanced"]["languages"][lang]["bytes_per_token"]
        single = result[mono]["languages"][lang]["bytes_per_token"]
        rows[lang] = {"balanced": balanced, "monolingual": single, "ratio": round(balanced / single, 4)}
    # Equal bytes of held-out text: what the balanced vocabulary costs both languages together.
    tokens_per_mb_each = sum(1e6 / rows[lang]["balanced"] for lang in rows)
    return {"train_bytes_per_language": budget, "heldout_docs": len(heldout), "languages": rows,
            "balanced_tokens_per_mb_each": round(tokens_per_mb_each),
            "inexact_docs": {name: sum(f["inexact_docs"] for f in e["languages"].values()) for name, e in result.items()},
            "vocab_split": result["balanced"]["vocab_split"], "evaluations": result}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab-size", type=int, default=24000, help="pieces of each model (default 24000; at most ~28k here)")
    p.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram")
    p.add_argument("--character-coverage", type=float, default=TrainSettings.character_coverage)
    p.add_argument("--bytes-per-language", type=int, default=None, help="cap the training text per language")
    p.add_argument("--en-share", type=float, default=0.5, help="English part of the balanced sample's bytes (default 0.5)")
    p.add_argument("--normalize-chinese", action="store_true",
                   help="normalize Chinese as the langid stage does by default (t2s, width, whitespace)")
    p.add_argument("--data", type=Path, default=TEXT, help="folder of JSONL {id, text, lang} (default ../shared/data/text)")
    args = p.parse_args()
    from rich.console import Console
    from rich.table import Table

    settings = TrainSettings(vocab_size=args.vocab_size, model_type=args.model_type,
                             character_coverage=args.character_coverage)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = compare(args.data, settings, Path(tmp), args.bytes_per_language, args.en_share, args.normalize_chinese)
        except RuntimeError as e:  # SentencePiece refuses, e.g. more pieces than a language's text supports
            print(f"error: SentencePiece cannot train these models: {e}", file=sys.stderr)
            return 2
    table = Table(title=f"bytes/token on held-out docs, {args.model_type} vocab {args.vocab_size:,}, coverage "
                        f"{args.character_coverage}, English {args.en_share:.0%} of the balanced sample"
                        + (", Chinese normalized as langid" if args.normalize_chinese else ""), show_edge=False)
    for col in ("lang", "balanced EN+ZH", "monolingual", "balanced / monolingual", f"target >= {TARGET_RATIO}"):
        table.add_column(col, justify="right")
    ok = True
    for lang, r in res["languages"].items():
        passed = r["ratio"] >= TARGET_RATIO
        ok &= passed
        table.add_row(lang, f"{r['balanced']:.3f}", f"{r['monolingual']:.3f}", f"{r['ratio']:.3f}", "yes" if passed else "NO")
    console = Console()
    console.print(table)
    ok &= not any(res["inexact_docs"].values())
    console.print("exact round trip of every held-out document: " + ", ".join(
        f"{name} {'yes' if not n else f'NO ({n} documents differ)'}" for name, n in res["inexact_docs"].items()))
    console.print(f"balanced model: {res['balanced_tokens_per_mb_each']:,} tokens for 1 MB of held-out English + "
                  f"1 MB of Chinese; vocabulary split: {res['vocab_split']}; {res['heldout_docs']} held-out docs; "
                  f"{time.time() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
