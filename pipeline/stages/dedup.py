"""dedup: exact (text, URL) and MinHash-LSH near duplicates, one survivor per cluster.

    upstream parts --SignatureTask (map)--> signatures --engine (shuffles, components)-->
    assignments per part --AssignmentTask (map over upstream parts)--> data/, rejected/, errors/

Exact-text groups, same-URL groups and near-duplicate candidates are all edges of one graph; each
connected component is a cluster with one survivor (highest q_score, then longest, then smallest
id, by default). Survivors and singletons keep `dup_cluster_id` (the survivor's id) and
`dup_cluster_size` (users upsample by it, as FineWeb-2 does); duplicates go to rejected/ with the
survivor's id as the detail, under the reason that relates them to the survivor: dup_exact (same
normalized text), else dup_url (same URL), else dup_near.

Scratch (signatures, assignments, Spark checkpoints) lives under the stage's temporary folder in
the workdir and is removed before the commit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from filters.minhash import Shingling, optimal_bands
from pipeline import storage
from pipeline.config import ConfigError, register_section
from pipeline.dedup.passes import AssignmentTask, DedupParams, SignatureTask
from pipeline.registry import register_stage
from pipeline.stage import Stage, StageRun, StageStats, upstream_parts

SURVIVOR_KEYS = ("q_score", "length", "id")


@register_section("dedup")
@dataclass
class DedupSection:
    exact: bool = True  # same text after whitespace normalization
    url: bool = True  # same URL (without #fragment)
    near: bool = True  # MinHash-LSH near duplicates
    threshold: float = 0.8  # Jaccard similarity of shingle sets that makes a near duplicate
    num_perm: int = 128  # MinHash permutations (datasketch's default)
    seed: int = 1  # permutation seed (datasketch's default)
    # bands x rows: 0 = derived from the threshold by datasketch's optimal-parameter rule, with
    # these weights on the false-positive and false-negative areas (verification removes false
    # positives, so missing a pair costs more; chosen by bench/dedup_quality.py)
    bands: int = 0
    rows: int = 0
    false_positive_weight: float = 0.05
    false_negative_weight: float = 0.95
    verify: bool = True  # keep a candidate pair only if its exact shingle Jaccard >= threshold
    en_ngram: int = 5  # English (and other non-Chinese): word n-grams (FineWeb: 5)
    zh_tokens: Literal["char", "word"] = "char"  # Chinese: characters or jieba words (bench/dedup_quality.py)
    zh_ngram: int = 5
    # survivor rule, most important first: higher q_score, longer text, smaller id (always last)
    survivor_order: list[str] = field(default_factory=lambda: list(SURVIVOR_KEYS))
    max_rounds: int = 100  # connected-components rounds before giving up (log^2 n in practice)


@register_stage
class DedupStage(Stage):
    name = "dedup"
    upstream = "quality"

    def __init__(self, cfg):
        super().__init__(cfg)
        s = self.section
        where = f"{cfg.path}: dedup"
        if not 0.0 < s.threshold < 1.0:
            raise ConfigError(f"{where}.threshold: expected a number between 0 and 1, got {s.threshold!r}")
        bad = [k for k in s.survivor_order if k not in SURVIVOR_KEYS]
        if bad:
            raise ConfigError(f"{where}.survivor_order: expected keys among {list(SURVIVOR_KEYS)}, got {bad[0]!r}")
        if s.num_perm < 1 or s.en_ngram < 1 or s.zh_ngram < 1:
            raise ConfigError(f"{where}: num_perm, en_ngram and zh_ngram must be >= 1")
        bands, rows = (s.bands, s.rows) if s.bands and s.rows else optimal_bands(
            s.threshold, s.num_perm, s.false_positive_weight, s.false_negative_weight)
        if bands * rows > s.num_perm:
            raise ConfigError(f"{where}: bands x rows = {bands} x {rows} needs more than num_perm = {s.num_perm}")
        self.params = DedupParams(exact=s.exact, url=s.url, near=s.near, verify=s.verify, num_perm=s.num_perm,
                                  seed=s.seed, bands=bands, rows=rows,
                                  shingling=Shingling(s.en_ngram, s.zh_tokens, s.zh_ngram))
        self.survivor_order = [k for k in s.survivor_order if k != "id"] + ["id"]

    def execute(self, stage_run: StageRun) -> StageStats:
        parts = upstream_parts(stage_run.upstream_dir)
        work = storage.join(stage_run.tmp_dir, "_work")
        sig_dir, assign_root = storage.join(work, "signatures"), storage.join(work, "assign")
        engine = stage_run.engine
        units = list(enumerate(parts))
        counts = {"candidate_edges": 0, "cc_rounds": 0}
        seconds = {}
        started = time.perf_counter()
        signed = engine.map_units(f"{self.name} signatures", SignatureTask(self.params, sig_dir), units)
        seconds["seconds_signatures"] = time.perf_counter() - started
        if sum(r["docs"] - r["errors"] for r in signed):  # an empty input has nothing to cluster
            s = self.section
            if engine.name == "spark":
                from pipeline.dedup import spark_dedup

                counts = spark_dedup.assignments(engine.spark, sig_dir, assign_root, storage.join(work, "checkpoints"),
                                                 self.params, s.threshold, self.survivor_order, s.max_rounds)
            else:
                from pipeline.dedup import beam_dedup

                counts = beam_dedup.assignments(engine, sig_dir, assign_root, storage.join(work, "components"),
                                                self.params, s.threshold, self.survivor_order, s.max_rounds)
            seconds["seconds_clustering"] = time.perf_counter() - started - seconds["seconds_signatures"]
        task = AssignmentTask(self.name, stage_run.tmp_dir, sig_dir, assign_root)
        total = StageStats()
        for r in engine.map_units(f"{self.name} write", task, units):
            total.merge(StageStats.from_dict(r))
        seconds["seconds_write"] = time.perf_counter() - started - sum(seconds.values())
        storage.rmtree(work)
        total.extra["units"] = len(parts)
        total.extra["bands"] = self.params.bands
        total.extra["rows"] = self.params.rows
        for k, v in {**counts, **seconds}.items():
            total.extra[k] = round(v, 3) if isinstance(v, float) else v
        return total
