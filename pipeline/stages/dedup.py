"""dedup: exact (text, URL) and MinHash-LSH near duplicates, one survivor per cluster.

    upstream parts --SignatureTask (map)--> signatures --engine (shuffles, components)-->
    assignments per part --AssignmentTask (map over upstream parts)--> data/, rejected/, errors/

Exact-text groups, same-URL groups and near-duplicate candidates are all edges of one graph; each
connected component is a cluster with one survivor. Survivors and singletons keep `dup_cluster_id`
(the survivor's id) and `dup_cluster_size` (users upsample by it, as FineWeb-2 does); duplicates go
to rejected/ with the survivor's id as the detail, under the reason that relates them to the
survivor: dup_exact (same normalized text), else dup_url (same URL), else dup_near: a near copy of the
survivor, or linked to it only through other members (a page sharing its URL with a near copy of the
survivor is dup_near of that survivor; no edge is kept per member, so the path is not reported).

What is hashed: the text as langid normalized it and quality received it. Quality's line rules
(C4) rewrite kept English text, and two copies of a speech wrapped differently lose different
lines, so hashing the cleaned text misses them; quality keeps the text it received in
`q_text_before_rewrite` where it changed it, dedup hashes that (and drops the column), and the
kept document is still the cleaned text.

The survivor rule (`survivor_order`, most important first; the default):
  1. q_score: the higher quality step (floor(q_score / q_score_step): a classifier's probability
     moves by a few hundredths between copies of one text, so scores within a step tie);
  2. noise: fewer padded, repeated, hard-wrapped or mangled lines (filters.copy_noise: duplicated
     lines, lines that end no sentence, ASCII punctuation or spaces between Han characters,
     whitespace runs), so the original beats a boilerplate-padded or re-typeset copy;
  3. crawl_date: the earliest crawl (the first publication), unknown dates last;
  4. id (always last), so the choice never depends on partitioning. `length` (longer first) may
     be named too.

Incremental dedup against a persistent index (pipeline/dedup/index.py): after a run its
documents' signatures, each with its survivor, go to `index` (default <workdir>/dedup_index; gs:// and s3:// work), and a
later run with `against: [index, ...]` also clusters its documents with the indexed ones sharing a
key (found by `pipeline.dedup.index.find_neighbours`, which reads only the index's row groups that
the new keys can match). Indexed documents always win ("old wins": they are never rewritten), so a new document in
their cluster goes to rejected/dup_exact_existing, dup_url_existing or dup_near_existing with
"<survivor id> in run <run>" as the detail. Deduplicating snapshot A, then B against A's index,
keeps what deduplicating A+B together keeps when the rule ranks A's documents first, except where a
B document bridges two A clusters (both A survivors stay: old documents are never rewritten).
A run that finds itself already in the index (same input fingerprint and config) neither reads nor
appends itself again, so a run killed after its append and then resumed gives the same output. An
indexed document with the id of a new one is that document from an earlier run of this input (the
same snapshot again after an upstream or config change): the new one replaces it in the graph and is
never its duplicate. Same id means same source position; it takes the same URL too (the same text,
when either has no URL), as another dump laid out like this one gives other documents the same ids.
When the index it replaces it in is this run's own `index`, the run retires it there (the commit that
appends this run drops it: `pipeline.dedup.index`), so later runs see one version of each document,
and stats' `index_rows_retired` counts those rows. An indexed run with retired rows is no longer one
this run can be a resume of.
`against` paths resolve as `index` does (relative: under the workdir), and each must exist but this
run's own `index` (before its first run): a mistyped one would deduplicate against nothing.

Paragraph dedup (`paragraphs`, CCNet-style): after clustering, each line key (filters.paragraphs:
the line normalized as MinHash normalizes text) is counted over the surviving documents on the
engine (a shuffle by key; duplicates do not count), lines found in more than `max_docs` documents
of their language are removed from the kept text, and a document left shorter than
`min_doc_chars` goes to rejected/paragraph_dedup:too_short. Counts are per run: the index plays
no part in them. stats.json's report.paragraph_dedup holds lines and bytes removed (per source and
language) and the most frequent removed lines. Default limit: bench/dedup_paragraphs.py.

Scratch (signatures, assignments, Spark checkpoints) lives under the stage's temporary folder in
the workdir and is removed before the commit. On an object store, where a rename is a copy, the map
passes' files (signatures, paragraph keys, the index probe's) are written once under names of their
task attempts and read by the names the tasks returned (`pipeline.storage.scratch_sink`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Literal

from filters.minhash import Shingling, optimal_bands
from pipeline import storage
from pipeline.config import ConfigError, bounded, is_system_folder, register_section
from pipeline.dedup.index import MAX_INDEXES, DedupIndex, KeyKinds, RetireTask, Retiring, find_neighbours
from pipeline.dedup.passes import (REASON_PARAGRAPHS_LEFT_SHORT, AssignmentTask, DedupParams, IndexAppend,
                                   ParagraphParams, SignatureTask)
from pipeline.registry import register_stage
from pipeline.runner import marker_key
from pipeline.selection import NOT_READ
from pipeline.stage import Stage, StageRun, StageStats, upstream_parts
from pipeline.stages.readers import ReadsWhatMixUses

SURVIVOR_KEYS = ("q_score", "noise", "crawl_date", "length", "id")
DEFAULT_SURVIVOR_ORDER = ["q_score", "noise", "crawl_date", "id"]


@dataclass
class ParagraphDedupSection:
    """Cross-document paragraph (line) dedup, CCNet-style, over the survivors; per language, "*" for
    every language not named (Chinese variants count as zh)."""

    enabled: bool = True
    max_docs: dict[str, int] = field(default_factory=lambda: {"*": 3})  # lines in more documents are removed
    min_chars: dict[str, int] = field(default_factory=lambda: {"*": 10, "zh": 6})  # shorter lines are left alone
    min_doc_chars: dict[str, int] = field(default_factory=lambda: {"*": 200, "zh": 100})  # shorter after: dropped
    samples: int = 20  # most frequent removed lines in stats.json (report)

    def __post_init__(self):
        for name in ("max_docs", "min_chars", "min_doc_chars"):
            table = getattr(self, name)
            if "*" not in table:
                raise ValueError(f"{name}: needs a \"*\" entry for the languages not named, got {table!r}")
            if any(v < 0 for v in table.values()):
                raise ValueError(f"{name}: expected numbers >= 0, got {table!r}")


@register_section("dedup")
@dataclass
class DedupSection:
    exact: bool = True  # same text after whitespace normalization
    url: bool = True  # same URL (without #fragment)
    near: bool = True  # MinHash-LSH near duplicates
    threshold: float = 0.8  # Jaccard similarity of shingle sets that makes a near duplicate
    num_perm: int = bounded(128, low=1)  # MinHash permutations (datasketch's default)
    seed: int = 1  # permutation seed (datasketch's default)
    # bands x rows: 0 = derived from the threshold by datasketch's optimal-parameter rule, with
    # these weights on the false-positive and false-negative areas (verification removes false
    # positives, so missing a pair costs more; chosen by bench/dedup_quality.py)
    bands: int = 0
    rows: int = 0
    false_positive_weight: float = 0.05
    false_negative_weight: float = 0.95
    verify: bool = True  # keep a candidate pair only if its exact shingle Jaccard >= threshold
    en_ngram: int = bounded(5, low=1)  # English (and other non-Chinese): word n-grams (FineWeb: 5)
    zh_tokens: Literal["char", "word"] = "char"  # Chinese: characters or jieba words (bench/dedup_quality.py)
    zh_ngram: int = bounded(5, low=1)
    # survivor rule, most important first (see the module docstring): higher q_score step, less copy
    # noise, earliest crawl date, smaller id (always last); `length` (longer first) may be added
    survivor_order: list[str] = field(default_factory=lambda: list(DEFAULT_SURVIVOR_ORDER))
    q_score_step: float = bounded(0.05, above=0, high=1)  # q_scores within one step tie, and the next key decides
    max_rounds: int = 100  # connected-components rounds before giving up (log^2 n in practice)
    # persistent index: where this run's survivors go (a relative path: under the workdir; null: none)
    index: str | None = "dedup_index"
    # indexes of earlier runs to deduplicate against (relative paths: under the workdir, as `index`);
    # each must exist, except this run's own `index` before its first run
    against: list[str] = field(default_factory=list)
    paragraphs: ParagraphDedupSection = field(default_factory=ParagraphDedupSection)

    def __post_init__(self):  # checked when the config loads, not when a run reaches dedup
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold: expected a number between 0 and 1, got {self.threshold!r}")
        bad = [k for k in self.survivor_order if k not in SURVIVOR_KEYS]
        if bad:
            raise ValueError(f"survivor_order: expected keys among {list(SURVIVOR_KEYS)}, got {bad[0]!r}")
        if bool(self.bands) != bool(self.rows):
            raise ValueError(f"bands and rows: expected both 0 (derived from the threshold) or both >= 1, "
                             f"got bands={self.bands}, rows={self.rows}")
        if self.bands * self.rows > self.num_perm:  # derived ones always fit
            raise ValueError(f"bands x rows = {self.bands} x {self.rows} needs more than num_perm = {self.num_perm}")
        if len(self.against) > MAX_INDEXES:
            raise ValueError(f"against: expected at most {MAX_INDEXES} indexes, got {len(self.against)}")
        # the index is written and locked by every run; a relative one is under the (checked) workdir
        if self.index and self.index.startswith("/") and is_system_folder(os.path.normpath(self.index)):
            raise ValueError(f"index: expected a folder of your own, got {self.index!r} (a system folder)")


@register_stage
class DedupStage(ReadsWhatMixUses, Stage):
    name = "dedup"
    upstream = "pii"
    output_version = 2  # 2: crawl dates compared as times; a re-run document replaces its indexed self

    def __init__(self, cfg):
        super().__init__(cfg)
        s = self.section
        bands, rows = (s.bands, s.rows) if s.bands and s.rows else optimal_bands(
            s.threshold, s.num_perm, s.false_positive_weight, s.false_negative_weight)
        self.params = DedupParams(exact=s.exact, url=s.url, near=s.near, verify=s.verify, num_perm=s.num_perm,
                                  seed=s.seed, bands=bands, rows=rows,
                                  shingling=Shingling(s.en_ngram, s.zh_tokens, s.zh_ngram),
                                  q_score_step=s.q_score_step,
                                  paragraphs=ParagraphParams(dict(s.paragraphs.max_docs), dict(s.paragraphs.min_chars),
                                                             dict(s.paragraphs.min_doc_chars), s.paragraphs.samples)
                                  if s.paragraphs.enabled else None)
        self.survivor_order = [k for k in s.survivor_order if k != "id"] + ["id"]
        def resolved(path: str) -> DedupIndex:
            return DedupIndex(path if "://" in path or path.startswith("/") else storage.join(cfg.run.workdir, path))

        self.index = resolved(s.index) if s.index else None
        self.against = [resolved(p) for p in s.against]
        for idx in self.against:  # a mistyped path would dedup against nothing, silently
            if not (self.index and self._same_index(idx, self.index)) and idx.generation()["generation"] == 0:
                raise ConfigError(f"{cfg.path}: dedup.against: no index at {idx.path} (no _manifest/gen-*.json): "
                                  "expected the `index` folder of an earlier dedup run")

    def _run_identity(self, stage_run: StageRun) -> dict:
        """What names this run in an index: its upstream's _SUCCESS and its own config."""
        marker = json.loads(storage.read_text(storage.join(stage_run.upstream_dir, "_SUCCESS")))
        return {"input_fingerprint": marker_key(marker), "config_hash": self.config_hash()}

    def _same_index(self, a: DedupIndex, b: DedupIndex) -> bool:
        return storage.filesystem(a.path)[1].rstrip("/") == storage.filesystem(b.path)[1].rstrip("/")

    def execute(self, stage_run: StageRun) -> StageStats:
        with self.index.lease() if self.index else contextlib.nullcontext() as lease:
            # the index's generation read under the lease is the one this run appends to
            return self._execute(stage_run, lease)

    def _execute(self, stage_run: StageRun, lease) -> StageStats:
        where = f"{self.cfg.path}: dedup"
        settings = self.params.index_settings()
        identity = self._run_identity(stage_run)
        append = manifest = self_run = None
        if self.index is not None:
            manifest = self.index.generation()
            self.index.check_settings(manifest, settings, where)
            # a run with rows retired since is not this one's output any more: this run replaces it
            earlier = [r for r in manifest["runs"] if {k: r[k] for k in identity} == identity and not r.get("retired")]
            if earlier:  # appended before a kill: same survivors, so neither read nor append again
                self_run = earlier[0]["run"]
            else:
                seq = len(manifest["runs"])
                digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
                self_run = f"{seq:05d}-{digest}"
                append = IndexAppend(self.index.run_dir(self_run), self_run, seq)
        indexed, against_runs, own = [], 0, None
        for ordinal, idx in enumerate(self.against):
            same = self.index is not None and self._same_index(idx, self.index)
            if same:
                own = ordinal
            m = manifest if same else idx.generation()
            idx.check_settings(m, settings, where)
            indexed += idx.parts(m, skip_run=self_run if same else None, index=ordinal)
            against_runs += len([r for r in m["runs"] if not (same and r["run"] == self_run)])
        parts = upstream_parts(stage_run.upstream_dir)
        work = storage.join(stage_run.tmp_dir, "_work")
        sig_dir, assign_root = storage.join(work, "signatures"), storage.join(work, "assign")
        engine = stage_run.engine
        units = list(enumerate(parts))
        # a run appending to an index it reads retires there what it replaces; nothing elsewhere
        own_files = frozenset(f for f, part in enumerate(indexed) if part.index == own)
        retiring = Retiring(storage.join(work, "replaced"), own_files) if append is not None and own_files else None
        counts = {"candidate_edges": 0, "cc_rounds": 0, "existing_matches": 0, "index_bytes_read": 0}
        seconds = {}
        started = time.perf_counter()
        para_dir, removal_root = storage.join(work, "paragraphs"), storage.join(work, "para_remove")
        paragraphs = self.params.paragraphs
        signed = engine.map_units(f"{self.name} signatures",
                                  SignatureTask(self.params, sig_dir, para_dir if paragraphs else None,
                                                self.selection), units)
        seconds["seconds_signatures"] = time.perf_counter() - started
        # the files the tasks wrote, by name: on an object store a failed attempt's may lie beside them
        sig_files = {r["part"]: r["signatures"] for r in signed if r["signatures"]}
        para_files = [r["paragraphs"] for r in signed if r["paragraphs"]]
        if sum(r["docs"] - r["errors"] for r in signed):  # an empty input has nothing to cluster
            s = self.section
            neighbours = []
            if indexed:
                p = self.params
                neighbours, found = find_neighbours(engine, indexed, list(sig_files.values()),
                                                    storage.join(work, "index_probe"),
                                                    KeyKinds(text=p.exact, url=p.url, bands=p.near),
                                                    replacing=retiring is not None)
                counts.update(found)
                seconds["seconds_index_probe"] = time.perf_counter() - started - sum(seconds.values())
            if engine.name == "spark":
                from pipeline.dedup import spark_dedup

                counts.update(spark_dedup.assignments(engine.spark, list(sig_files.values()), assign_root,
                                                      storage.join(work, "checkpoints"), self.params, s.threshold,
                                                      self.survivor_order, s.max_rounds, neighbours, retiring))
            else:
                from pipeline.dedup import beam_dedup

                counts.update(beam_dedup.assignments(engine, list(sig_files.values()), assign_root,
                                                     storage.join(work, "components"),
                                                     self.params, s.threshold, self.survivor_order, s.max_rounds,
                                                     neighbours, retiring))
            seconds["seconds_clustering"] = time.perf_counter() - started - sum(seconds.values())
            if paragraphs is not None and para_files:
                if engine.name == "spark":
                    counts.update(spark_dedup.paragraph_removals(engine.spark, para_files, assign_root, removal_root,
                                                                 paragraphs.max_docs))
                else:
                    counts.update(beam_dedup.paragraph_removals(engine, para_files, assign_root, removal_root,
                                                                paragraphs.max_docs, [u for u, _ in units],
                                                                storage.join(work, "paragraph_counts")))
                seconds["seconds_paragraphs"] = time.perf_counter() - started - sum(seconds.values())
        task = AssignmentTask(self.name, stage_run.tmp_dir, sig_files, assign_root, append, paragraphs, removal_root,
                              self.selection)
        total, samples = StageStats(), []
        for r in engine.map_units(f"{self.name} write", task, units):
            total.merge(StageStats.from_dict(r))
            samples += r["paragraph_samples"]
        seconds["seconds_write"] = time.perf_counter() - started - sum(seconds.values())
        self._paragraph_report = self._paragraph_summary(total, samples) if paragraphs else None
        retired = []
        if retiring is not None:  # this run's earlier self leaves the index it replaces it in
            retired = engine.map_units(f"{self.name} index retire",
                                       RetireTask(retiring.root, indexed, self.index.path, manifest["generation"] + 1,
                                                  append.run),
                                       retiring.retired_files())
            seconds["seconds_index_retire"] = time.perf_counter() - started - sum(seconds.values())
        storage.rmtree(work)
        if append is not None:  # the run's files are in place: generation N+1 makes them part of the index
            lease.confirm()  # still ours, read now (a run that lost it must not append)
            self.index.commit(manifest, settings, {
                "run": append.run, **identity, "survivors": total.kept.docs, "against": [i.path for i in self.against],
                "documents": total.input.docs - sum(c.docs for c in total.errors.values())
                - (total.dropped[NOT_READ].docs if NOT_READ in total.dropped else 0)},
                self.index.revised(manifest, indexed, own, retired))
        total.extra["index_rows_retired"] = sum(r["retired"] for r in retired)
        total.extra["index_runs_against"] = against_runs
        total.extra["units"] = len(parts)
        total.extra["bands"] = self.params.bands
        total.extra["rows"] = self.params.rows
        for k, v in {**counts, **seconds}.items():
            total.extra[k] = round(v, 3) if isinstance(v, float) else v
        return total

    def _paragraph_summary(self, total: StageStats, samples: list[dict]) -> dict:
        """Paragraph dedup for the report: lines and bytes removed (per source and language; the
        per-source counters leave `extra`), and the most frequent removed lines (`samples`: the
        parts', in part order)."""
        by_source: dict[str, dict[str, int]] = {}
        for key in [k for k in total.extra if k.startswith("paragraph_bytes_removed:")]:
            _, source, lang = key.split(":", 2)
            by_source.setdefault(source, {})[lang] = int(total.extra.pop(key))
        top = sorted({r["key"]: r for r in samples}.values(), key=lambda r: (-r["docs"], r["key"]))
        return {"lines_removed": int(total.extra.get("paragraphs_removed", 0)),
                "documents_rewritten": int(total.extra.get("paragraph_docs_rewritten", 0)),
                "documents_left_too_short": total.dropped[REASON_PARAGRAPHS_LEFT_SHORT].docs
                if REASON_PARAGRAPHS_LEFT_SHORT in total.dropped else 0,
                "bytes_removed": sum(sum(v.values()) for v in by_source.values()),
                "bytes_removed_by_source_lang": by_source,
                "top_removed": [{"documents": r["docs"], "lang": r["lang"], "line": r["line"]}
                                for r in top[:self.params.paragraphs.samples]]}

    def report_data(self, stage_run: StageRun) -> dict:
        return {"paragraph_dedup": self._paragraph_report} if getattr(self, "_paragraph_report", None) else {}
