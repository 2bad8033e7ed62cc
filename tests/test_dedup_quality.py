"""bench/dedup_quality.py --pipeline's scoring: what counts as a dedup miss, a pre-dedup loss and a
wrong removal (the figures in docs/benchmarks.md rest on it)."""
from __future__ import annotations

import importlib.util
import sys

from conftest import REPO


def _bench():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("dedup_quality", REPO / "bench" / "dedup_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pipeline_scores_separate_dedup_misses_from_earlier_losses():
    bench = _bench()
    texts = {f"en{i:05d}": f"base text number {i}" for i in range(5)}
    rows = [{"id": d, "text": t, "lang": "en"} for d, t in texts.items()]
    rows += [{"id": f"{d}-copy", "text": t + " edited", "lang": "en"} for d, t in texts.items()]
    pair = {i: (f"en{i:05d}", f"en{i:05d}-copy") for i in range(5)}
    positives = {pair[0], pair[1], pair[2], pair[3]}  # pair 4 is below the threshold
    fates = {d["id"]: ("kept", "", None) for d in rows}
    fates["en00000-copy"] = ("dedup", "dup_near", "en00000")  # found
    fates["en00001-copy"] = ("quality", "fineweb:line_punct_ratio", None)  # lost before dedup
    # pair 2 reaches dedup and is missed; pair 4's copy is removed although not a true duplicate
    fates["en00004-copy"] = ("dedup", "dup_near", "en00004")
    fates["en00003"] = ("dedup", "dup_near", "en00003-copy")  # found, the copy survived
    kinds = {f"en{i:05d}-copy": ["typos"] for i in range(5)}
    scores = bench.score_pipeline(fates, rows, positives, kinds)
    total = bench.PipelineScore()
    for s in scores.values():
        for name in ("true_pairs", "reaching", "found", "one_left", "removals", "correct_removals"):
            setattr(total, name, getattr(total, name) + getattr(s, name))
        total.missed += s.missed
        total.early.update(s.early)
    assert (total.true_pairs, total.reaching, total.found) == (4, 3, 2)
    assert total.missed == [pair[2]]
    assert total.one_left == 3  # pair 2 keeps both copies
    assert (total.removals, total.correct_removals) == (3, 2)
    assert total.early == {"copy quality: fineweb:line_punct_ratio": 1}


def test_true_groups_are_transitive():
    bench = _bench()
    group = bench.true_groups({("a", "b"), ("b", "c"), ("x", "y")})
    assert group["a"] == group["b"] == group["c"] != group["x"] == group["y"]
