"""Language ID speed: `LanguageIdentifier.identify` against bare lid.176.ftz on whole documents.

Same documents, same process, one core: the bare baseline is one fastText prediction of each
whole document (newlines as spaces, top label: what datatrove's LanguageFilter does); the
project is `identify` with the default `langid` config (script rules, block shares, folded view,
variant). Times are CPU seconds of this process, the best of --rounds rounds, the two measured
alternately (the machines here are shared: the best round is the one least disturbed).

--profile adds where identify's time goes: fastText predictions by kind (block views, folded
views, the variety sample), with their number and characters, the script histograms, cutting
mixed lines, and the rest (Python glue). --module profiles another version of filters/langid.py,
e.g. the one before this work:

    .venv/bin/python bench/langid_speed.py --profile
    git show 1d6b45d:filters/langid.py > /tmp/langid_before.py
    .venv/bin/python bench/langid_speed.py --profile --module /tmp/langid_before.py
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEXT = REPO.parent / "shared" / "data" / "text"
SETS = {"English news": "en-news-scrapinghub.jsonl", "English speeches": "en-speeches-sotu.jsonl",
        "Chinese news": "zh-news-thucnews.jsonl", "Simplified Chinese wiki": "zh-wiki-cmrc2018.jsonl",
        "Traditional Chinese wiki": "zh-hant-wiki-drcd.jsonl"}


def load_module(path: Path | None):
    if path is None:
        import filters.langid as module
        return module
    spec = importlib.util.spec_from_file_location("langid_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bare_seconds(model, predict_line, docs: list[str]) -> float:
    started = time.process_time()
    for doc in docs:
        predict_line(model, doc.replace("\n", " "), 1)
    return time.process_time() - started


def identify_seconds(identifier, docs: list[str]) -> float:
    started = time.process_time()
    for doc in docs:
        identifier.identify(doc)
    return time.process_time() - started


class Profile:
    """Wraps the module's functions with CPU timers (names it lacks are skipped)."""

    def __init__(self, module):
        self.module = module
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.chars: dict[str, int] = defaultdict(int)
        self.kind = "block view"

    def _timed(self, name: str | None, fn, *, count_chars: bool = False):
        """fn timed under `name` (None: under the current kind of prediction)."""
        def wrapper(*args, **kwargs):
            key = name or self.kind
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.process_time() - started
                self.calls[key] += 1
                if count_chars:
                    self.chars[key] += len(args[1])
        return wrapper

    def _sets_kind(self, kind: str, fn, *, restore: bool):
        """fn with the kind of the predictions it (or what follows it) makes set to `kind`."""
        def wrapper(*args, **kwargs):
            previous, self.kind = self.kind, kind
            try:
                return fn(*args, **kwargs)
            finally:
                if restore:
                    self.kind = previous
        return wrapper

    @contextlib.contextmanager
    def installed(self):
        m, cls = self.module, self.module.LanguageIdentifier
        patches = [
            (m, "_predict_raw", lambda fn: self._timed(None, fn, count_chars=True)),
            (m, "line_script_histograms", lambda fn: self._timed("script histograms", fn)),
            (m, "detect_han_script", lambda fn: self._timed("Hans/Hant detection", fn)),
            # A block's folded view is predicted right after letters_only, within the same _predict.
            (m, "letters_only", lambda fn: self._sets_kind("folded view", fn, restore=False)),
            (cls, "_predict", lambda fn: self._sets_kind("block view", fn, restore=True)),
            (cls, "_variant", lambda fn: self._sets_kind("variety sample", fn, restore=True)),
            (cls, "_cut", lambda fn: self._timed("cutting mixed lines", fn)),
        ]
        originals = []
        for owner, name, make in patches:
            if name in vars(owner):  # versions without a step skip it
                originals.append((owner, name, vars(owner)[name]))
                setattr(owner, name, make(getattr(owner, name)))
        try:
            yield self
        finally:
            for owner, name, fn in originals:
                setattr(owner, name, fn)


def measure(module, docs: list[str], rounds: int) -> tuple[float, float]:
    identifier = module.LanguageIdentifier()
    identifier.identify("warm up: 模型 tables")  # model, registry and script tables load once per process
    model = module.load_fasttext(identifier.model_path)
    bare, stage = [], []
    for _ in range(rounds):
        bare.append(bare_seconds(model, module.predict_line, docs))
        stage.append(identify_seconds(identifier, docs))
    return min(bare), min(stage)


def profile(module, docs: list[str]) -> tuple[float, Profile]:
    identifier = module.LanguageIdentifier()
    identifier.identify("warm up: 模型 tables")
    prof = Profile(module)
    with prof.installed():
        total = identify_seconds(identifier, docs)
    return total, prof


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=TEXT, help="folder of the JSONL document sets")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side; the best is kept")
    parser.add_argument("--profile", action="store_true", help="also print where identify's time goes")
    parser.add_argument("--module", type=Path, help="another filters/langid.py to measure (default: this tree's)")
    parser.add_argument("--target", type=float, default=0.8, help="ratio to meet (issue 19)")
    args = parser.parse_args()
    module = load_module(args.module)
    print(f"identify ({args.module or 'filters/langid.py'}) against bare lid.176.ftz whole-document predict, "
          f"CPU s, best of {args.rounds}")
    print("| documents | MB | bare MB/s | identify MB/s | identify / bare |")
    print("|---|---:|---:|---:|---:|")
    missed = []
    profiles = {}
    for name, file in SETS.items():
        path = args.text / file
        if not path.exists():
            raise FileNotFoundError(f"{path}: document set missing (see ../shared/data/MANIFEST.md)")
        docs = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
        mbytes = sum(len(d.encode()) for d in docs) / 1e6
        bare, stage = measure(module, docs, args.rounds)
        ratio = bare / stage
        print(f"| {name} | {mbytes:.2f} | {mbytes / bare:.2f} | {mbytes / stage:.2f} | {ratio:.2f} |")
        if ratio < args.target:
            missed.append(name)
        if args.profile:
            profiles[name] = (bare, *profile(module, docs))
    if args.profile:
        print("\nwhere identify's time goes (CPU s; one profiled pass, timers add a little; bare = the baseline's)")
        print("| documents | bare | identify | fastText: block views | folded views | variety sample "
              "| script histograms | cutting | Hans/Hant | rest |")
        print("|---|---:|---:|---|---|---|---:|---:|---:|---:|")
        for name, (bare, total, prof) in profiles.items():
            cells = []
            for kind in ("block view", "folded view", "variety sample"):
                cells.append(f"{prof.seconds[kind]:.3f} ({prof.calls[kind]} calls, {prof.chars[kind] / 1e3:.0f}k chars)")
            others = [prof.seconds[k] for k in ("script histograms", "cutting mixed lines", "Hans/Hant detection")]
            rest = total - sum(prof.seconds[k] for k in ("block view", "folded view", "variety sample")) - sum(others)
            print(f"| {name} | {bare:.3f} | {total:.3f} | " + " | ".join(cells) + " | "
                  + " | ".join(f"{s:.3f}" for s in others) + f" | {rest:.3f} |")
    print(f"target identify / bare >= {args.target}:", "met" if not missed else f"MISSED for {missed}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
