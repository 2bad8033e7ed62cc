"""Language ID accuracy: bare lid.176.ftz against the langid stage's decision, per language.

Data: ../shared/data/langid (Leipzig sentences of 32 languages, as packaged by lingua's test set).
Bare fastText: the top label when its probability is >= 0.65 (datatrove's LanguageFilter).
Stage: filters.langid with the DEFAULT `langid` config (script rules, two views, per-language
minimum score); for languages other than en and zh, the same logic as if that language were kept.

Target (issue 3): precision >= 0.99 and recall >= 0.97 for en and for zh. Speed: bench/langid_speed.py.

    .venv/bin/python bench/langid_accuracy.py [--data ../shared/data/langid]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from filters.langid import LanguageFilter, load_fasttext, predict_line  # noqa: E402
from pipeline.stages.langid import LangidSection, build_filter, build_identifier  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "langid"
BARE_THRESHOLD = 0.65
TARGETS = {"en": (0.99, 0.97), "zh": (0.99, 0.97)}  # (precision, recall)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def load_sentences(data_dir: Path) -> list[tuple[str, str]]:
    """(text, gold language) pairs, in file order."""
    rows = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            doc = json.loads(line)
            rows.append((doc["text"], doc["lang"]))
    return rows


def score(gold: list[str], predicted: list[str | None]) -> dict[str, Score]:
    scores = {lang: Score() for lang in sorted(set(gold))}
    for g, p in zip(gold, predicted):
        if p == g:
            scores[g].tp += 1
            continue
        scores[g].fn += 1
        if p in scores:
            scores[p].fp += 1
    return scores


def bare_predictions(texts: list[str], model_path: str) -> list[str | None]:
    model = load_fasttext(model_path)
    out = []
    for text in texts:
        label, prob = predict_line(model, text.replace("\n", " "), 1)[0]
        out.append(label if prob >= BARE_THRESHOLD else None)
    return out


def stage_predictions(texts: list[str], section: LangidSection) -> list[str | None]:
    """The stage's decision for each text: its language when kept, else None."""
    identifier, default_filter = build_identifier(section), build_filter(section)
    out = []
    for text in texts:
        ident = identifier.identify(text)
        decide = default_filter if ident.lang in default_filter.languages else LanguageFilter(
            [ident.lang], min_score=section.min_score, default_min_score=section.default_min_score,
            min_share=section.min_share, mixed=section.mixed)
        out.append(ident.lang if decide.reason(ident) is None else None)
    return out


def evaluate(data_dir: Path = DATA) -> dict:
    rows = load_sentences(data_dir)
    texts, gold = [t for t, _ in rows], [g for _, g in rows]
    section = LangidSection()
    return {"sentences": len(rows), "bare": score(gold, bare_predictions(texts, build_identifier(section).model_path)),
            "stage": score(gold, stage_predictions(texts, section))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of lingua-<lang>.jsonl files")
    args = parser.parse_args()
    result = evaluate(args.data)
    print(f"{result['sentences']} sentences; bare = lid.176.ftz top label at >= {BARE_THRESHOLD}, "
          f"stage = default langid config")
    print("| lang | sentences | bare P | bare R | stage P | stage R |")
    print("|---|---:|---:|---:|---:|---:|")
    for lang, bare in result["bare"].items():
        stage = result["stage"][lang]
        mark = "**" if lang in TARGETS else ""
        print(f"| {mark}{lang}{mark} | {bare.tp + bare.fn} | {bare.precision:.3f} | {bare.recall:.3f} "
              f"| {stage.precision:.3f} | {stage.recall:.3f} |")
    failed = [lang for lang, (p, r) in TARGETS.items()
              if result["stage"][lang].precision < p or result["stage"][lang].recall < r]
    print("targets (P >= 0.99, R >= 0.97 for en and zh):", "met" if not failed else f"MISSED for {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
