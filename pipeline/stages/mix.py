"""mix: a weighted sample of the corpus to a token budget per language (aggregate, then a map).

Each source names its input (a finished stage, "decontaminate" by default, or Parquet files in the document
schema, e.g. an ingested curated dump like the Pile or WuDao) and the language it counts toward.

1. Census, on the engine: one task per input file sums documents, bytes and tokens per source (and
   a histogram of document weights when weighting by a quality signal); only these sums reach the
   driver. Tokens are exact where a document has `n_tokens` (it was encoded) or where
   `mix.count_tokens_with` names a tokenizer model (each document encoded on the engine, the model
   loaded once per worker); else bytes divided by the calibrated bytes per token of its language
   (or source). The two-pass workflow (README): a first pass plans with the estimates and trains
   the tokenizer; its model, copied out of the workdir, counts exactly in the second.
2. Plan, on the driver: each language gets `target_tokens * share`; each source of a language its
   weight's part of that, at most `max_epochs` times what it has. What a capped source cannot
   give goes to the other sources of its language; what no source can give is a shortfall, reported
   with its numbers (never silent). The plan is an expected number of epochs per document,
   `min(c_source * weight, max_epochs)`.
3. Sample, on the engine: a document with e expected epochs appears floor(e) times, plus once more
   when a seeded hash of its id and that repeat index falls below the fractional part. So the
   sample depends on the input and the seed alone, never on partitioning. Repeat k > 0 of a document
   gets the id `<id>#<k>`; every row carries `mix_source` and `mix_repeat`. A batch's rows are written
   copy by copy (`repeated_rows`), so a document's copies do not end up in one packed sequence.

Documents not drawn are counted under `mix_not_sampled` (documents that match no source under
`mix_no_source`, those with null or empty text under `mix_no_text`, and neither counts as available)
but not copied to rejected/: they stay in the upstream stage's output.
"""
from __future__ import annotations

import base64
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import ConfigError, InputPath, bounded, normalised_shares, register_section
from pipeline.registry import register_stage
from pipeline.runner import stage_dir
from pipeline.sampling import seeded_uniform
from pipeline.selection import in_sources, matching, string_column
from pipeline.stage import Stage, StageRun, StageStats, UnitWriter, present_columns, upstream_parts
from pipeline.worker_models import worker_tokenizer

log = logging.getLogger(__name__)

DEFAULT_STAGE = "decontaminate"
MIX_COLUMNS = [("mix_source", pa.string()), ("mix_repeat", pa.int32())]
NOT_SAMPLED = "mix_not_sampled"
NO_SOURCE = "mix_no_source"
NO_TEXT = "mix_no_text"  # null or empty text: nothing to train on, so neither drawn nor repeated
# A document of one input whose `source` a mix source takes from another input (the crawl in
# ingest's output when the mix reads the crawl after dedup, beside curated dumps from ingest).
OTHER_INPUT = "mix_taken_from_other_input"
WEIGHT_BINS_PER_OCTAVE = 32  # weight histogram resolution for the plan (2% steps)
# Document weights are clipped to 2**-256 .. 2**256: an infinite or overflowing value ** weight_exponent
# stays a finite weight (its bin's 2**(b/32) and tokens * weight do not overflow in the plan).
WEIGHT_LIMIT = 2.0 ** 256
ROWS_PER_WRITE = 4096  # rows of one output table: the repeats of a batch are written in slices
MAX_EPOCHS_LIMIT = 2 ** 31 - 1  # mix_repeat is an int32


@dataclass
class MixSource:
    name: str  # reported, and written to each row's `mix_source`
    lang: str  # the language its documents count toward (a key of mix.language_shares)
    stage: str | None = None  # read <workdir>/<stage>/data; "decontaminate" when neither stage nor path is set
    path: InputPath | None = None  # or Parquet files in the document schema (local, gs://, s3://; globs)
    # `source` column values that belong to this mix source (default: [name]; ["*"]: every document
    # of the input; "pile/*": every part ingest's subset_field made of the source pile, `?` one
    # character). Documents whose `lang` is set and differs from `lang` are not taken.
    match_source: list[str] | None = None
    weight: float = 1.0  # share of its language's tokens, relative to the other sources of that language
    max_epochs: float | None = None  # cap on repeats of a document (default: mix.max_epochs)
    bytes_per_token: float | None = None  # overrides mix.bytes_per_token[lang] for this source

    def __post_init__(self):
        from pipeline.stages import STAGE_ORDER

        if not self.name.strip():
            raise ValueError(f"name: expected the source's name (reported, and written to each row's mix_source), "
                             f"got {self.name!r}")
        if self.match_source is not None and not (self.match_source and all(p.strip() for p in self.match_source)):
            raise ValueError(f"source {self.name!r}: match_source: expected a list of `source` values or patterns, "
                             f"none of them empty (leave the key out for [{self.name!r}]), got {self.match_source!r}")
        if self.stage and self.path:
            raise ValueError(f"source {self.name!r}: set stage or path, not both")
        if self.stage and self.stage not in STAGE_ORDER[:STAGE_ORDER.index("mix")]:
            raise ValueError(f"source {self.name!r}: stage {self.stage!r} is not a stage before mix "
                             f"({', '.join(STAGE_ORDER[:STAGE_ORDER.index('mix')])})")
        if self.weight <= 0:
            raise ValueError(f"source {self.name!r}: weight must be > 0, got {self.weight}")
        if self.max_epochs is not None and not 0 < self.max_epochs <= MAX_EPOCHS_LIMIT:
            raise ValueError(f"source {self.name!r}: max_epochs must be > 0 and <= {MAX_EPOCHS_LIMIT}, "
                             f"got {self.max_epochs}")
        if self.bytes_per_token is not None and self.bytes_per_token <= 0:
            raise ValueError(f"source {self.name!r}: bytes_per_token must be > 0")

    @property
    def input_key(self) -> str:
        return f"path:{self.path}" if self.path else f"stage:{self.stage or DEFAULT_STAGE}"

    def matches_every_source(self) -> bool:
        return self.match_source is not None and "*" in self.match_source


@register_section("mix")
@dataclass
class MixSection:
    sources: list[MixSource]
    target_tokens: int  # total tokens of the mix (GLM-130B: about 400B, 200B per language)
    # GLM-130B: half each. Scaled to sum to 1: rounded decimals pass (three of 0.3333), see normalised_shares
    language_shares: dict[str, float] = field(default_factory=lambda: {"en": 0.5, "zh": 0.5})
    max_epochs: float = 4.0  # default cap on repeats of one document
    # Estimated token counts before a tokenizer exists: UTF-8 bytes per token by language, measured
    # on held-out ../shared/data/text with the balanced 24k unigram tokenizer (bench/tokenizer_balance.py:
    # en 3.63, zh 3.65; larger vocabularies give more). For exact counts, see count_tokens_with.
    bytes_per_token: dict[str, float] = field(default_factory=lambda: {"en": 3.6, "zh": 3.6})
    # Exact counts: a SentencePiece model (local, gs://, s3://) that encodes every candidate document
    # on the engine. It becomes the run's tokenizer (the tokenizer stage takes it instead of training),
    # so the plan counts what encode writes. Not <workdir>/tokenizer/*: a copy of the first pass's.
    count_tokens_with: InputPath | None = None
    weight_column: str | None = None  # e.g. q_score or dup_cluster_size: weight = value ** weight_exponent
    weight_exponent: float = bounded(1.0)  # any sign: -1 favours small clusters with dup_cluster_size
    weight_floor: float = 0.001  # values below it (and zero) count as this; missing values count as 1
    rebalance_within_language: bool = True  # a capped source's shortfall goes to its language's others

    def __post_init__(self):
        if self.target_tokens <= 0:
            raise ValueError(f"target_tokens must be > 0, got {self.target_tokens}")
        if not self.sources:
            raise ValueError("sources: at least one source is needed")
        self.language_shares = normalised_shares(self.language_shares)
        # NaN passes every comparison below (a NaN failed in the workers, far from the key)
        if not all(math.isfinite(v) for v in self.bytes_per_token.values()):
            raise ValueError(f"bytes_per_token must be finite numbers, got {self.bytes_per_token}")
        if any(v <= 0 for v in self.bytes_per_token.values()):
            raise ValueError(f"bytes_per_token must be > 0, got {self.bytes_per_token}")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: names must be unique, got {names}")
        for s in self.sources:
            if s.lang not in self.language_shares:
                raise ValueError(f"source {s.name!r}: lang {s.lang!r} is not in language_shares {sorted(self.language_shares)}")
            if s.bytes_per_token is None and s.lang not in self.bytes_per_token:
                raise ValueError(f"source {s.name!r}: no bytes_per_token for {s.lang!r} (set mix.bytes_per_token.{s.lang})")
        for lang, share in self.language_shares.items():
            if share > 0 and not any(s.lang == lang for s in self.sources):
                raise ValueError(f"language_shares.{lang} is {share} but no source has lang {lang!r}")
        if not 0 < self.max_epochs <= MAX_EPOCHS_LIMIT:
            raise ValueError(f"max_epochs must be > 0 and <= {MAX_EPOCHS_LIMIT}, got {self.max_epochs}")
        if self.weight_floor <= 0:
            raise ValueError(f"weight_floor must be > 0, got {self.weight_floor}")


# ---------------------------------------------------------------------------------------------
# Document-level logic shared by the census and the sample


def _bin_weight(b: int) -> float:
    return 2.0 ** (b / WEIGHT_BINS_PER_OCTAVE)


@dataclass
class Assignment:
    """Per document of a batch: its source index (-1: none; also -1 for a document without text), bytes,
    tokens and weight."""

    source: np.ndarray
    no_text: np.ndarray  # matched a source, but its text is null or empty
    other_input: np.ndarray  # unmatched here, but its `source` is taken from another input
    nbytes: np.ndarray
    tokens: np.ndarray
    exact: np.ndarray
    weight: np.ndarray


def assign(section: MixSection, key: str, batch: pa.RecordBatch) -> Assignment:
    """Which source reading input `key` each document of `batch` belongs to, and its size."""
    sources = _inputs(section)[key]
    n = batch.num_rows
    source_col = string_column(batch, "source")
    chosen = np.full(n, -1, dtype=np.int64)
    for index, s in sources:
        names = None if s.matches_every_source() else (s.match_source or [s.name])
        chosen[(chosen < 0) & matching(batch, names, s.lang)] = index
    nbytes = pc.fill_null(pc.binary_length(batch.column("text")), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    no_text = (chosen >= 0) & (nbytes == 0)
    chosen[no_text] = -1
    bpt = np.array([s.bytes_per_token or section.bytes_per_token[s.lang] for s in section.sources])
    tokens = nbytes / np.where(chosen >= 0, bpt[chosen], 1.0)
    exact = np.zeros(n, bool)
    if "n_tokens" in batch.schema.names and not section.count_tokens_with:  # else the model's counts win
        known = batch.column("n_tokens")
        exact = pc.is_valid(known).to_numpy(zero_copy_only=False)
        tokens = np.where(exact, pc.fill_null(known, 0).to_numpy(zero_copy_only=False).astype(np.float64), tokens)
    weight = np.ones(n)
    if section.weight_column and section.weight_column in batch.schema.names:
        values = pc.cast(batch.column(section.weight_column), pa.float64())
        raw = pc.fill_null(values, 1.0).to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            weight = np.maximum(np.nan_to_num(raw, nan=1.0), section.weight_floor) ** section.weight_exponent
        weight = np.clip(weight, 1 / WEIGHT_LIMIT, WEIGHT_LIMIT)
    taken_elsewhere = sorted({name for other, group in _inputs(section).items() if other != key
                              for _, s in group for name in (s.match_source or [s.name]) if name != "*"})
    other_input = (chosen < 0) & ~no_text & in_sources(source_col, taken_elsewhere)
    return Assignment(chosen, no_text, other_input, nbytes, tokens, exact, weight)


def count_exactly(section: MixSection, batch: pa.RecordBatch, a: Assignment, rows: np.ndarray) -> None:
    """Replace the estimated tokens of documents `rows` (indices into `batch`) with their counts under
    mix.count_tokens_with (the model is read once per worker process, as encode does)."""
    todo = np.unique(rows[~a.exact[rows]]) if section.count_tokens_with else rows[:0]
    if not len(todo):
        return
    texts = [t or "" for t in batch.column("text").take(pa.array(todo)).to_pylist()]
    _, offsets = worker_tokenizer(section.count_tokens_with).encode_flat(texts)  # the ids encode writes
    a.tokens[todo] = np.diff(offsets)
    a.exact[todo] = True


def _inputs(section: MixSection) -> dict[str, list[tuple[int, MixSource]]]:
    """Input key -> [(source index, source)], in config order."""
    groups: dict[str, list[tuple[int, MixSource]]] = {}
    for index, s in enumerate(section.sources):
        groups.setdefault(s.input_key, []).append((index, s))
    return groups


def _batches(path: str, batch_size: int = 4096):
    yield from pq.ParquetFile(storage.open_input(path)).iter_batches(batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Census: per-source sums, computed on the engine


CENSUS_SUMS = {"docs": 0, "bytes": 0, "tokens": 0, "exact_docs": 0, "exact_bytes": 0, "exact_tokens": 0}
# The census sums tokens (and their weight bins) in integer units of 1/1024 token: float sums depend on
# the order the files' sums arrive in, and a coefficient one ulp apart can flip a document's draw.
# merge_census turns them into tokens once every file is in.
TOKEN_UNITS = 1024


@dataclass
class Census:
    """Engine task: one input file in, per-source sums and the file's schema out."""

    section: MixSection

    def __call__(self, unit: tuple[str, str]) -> dict:
        key, path = unit
        sources = _inputs(self.section)[key]
        sums: dict[str, dict] = {}
        unmatched: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        pf = pq.ParquetFile(storage.open_input(path))
        columns = present_columns(pf.schema_arrow, ("text", "source", "lang", "n_tokens", self.section.weight_column))
        for batch in pf.iter_batches(batch_size=4096, columns=columns):
            a = assign(self.section, key, batch)
            count_exactly(self.section, batch, a, np.flatnonzero(a.source >= 0))
            for index, s in sources:
                mask = a.source == index
                if not mask.any():
                    continue
                agg = sums.setdefault(s.name, dict(CENSUS_SUMS, bins={}))
                exact = mask & a.exact
                agg["docs"] += int(mask.sum())
                agg["bytes"] += int(a.nbytes[mask].sum())
                units = np.rint(a.tokens[mask] * TOKEN_UNITS).astype(np.int64)
                agg["tokens"] += int(units.sum())
                agg["exact_docs"] += int(exact.sum())
                agg["exact_bytes"] += int(a.nbytes[exact].sum())
                agg["exact_tokens"] += int(a.tokens[exact].sum())
                bins = np.round(np.log2(a.weight[mask]) * WEIGHT_BINS_PER_OCTAVE).astype(np.int64)
                for b, t in zip(*_group_sum(bins, units)):
                    agg["bins"][str(b)] = agg["bins"].get(str(b), 0) + t
            lost = (a.source < 0) & ~a.other_input & ~a.no_text
            if lost.any():
                keys = [f"{src}|{lang}" for src, lang in zip(
                    string_column(batch, "source").filter(pa.array(lost)).to_pylist(),
                    string_column(batch, "lang").filter(pa.array(lost)).to_pylist())]
                for k, nb in zip(keys, a.nbytes[lost]):
                    unmatched[k][0] += 1
                    unmatched[k][1] += int(nb)
        schema = base64.b64encode(pf.schema_arrow.serialize().to_pybytes()).decode()
        return {"sources": sums, "unmatched": dict(unmatched), "schema": schema}


def _group_sum(keys: np.ndarray, values: np.ndarray) -> tuple[list[int], list[int]]:
    """Integer `values` summed by key (bincount's weights would sum them as floats)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros(len(uniq), np.int64)
    np.add.at(sums, inverse, values)
    return uniq.tolist(), sums.tolist()


def merge_census(results: list[dict]) -> tuple[dict, dict, list[pa.Schema]]:
    sources: dict[str, dict] = {}
    unmatched: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    schemas = []
    for r in results:
        for name, agg in r["sources"].items():
            total = sources.setdefault(name, dict(CENSUS_SUMS, bins={}))
            for k in CENSUS_SUMS:
                total[k] += agg[k]
            for b, t in agg["bins"].items():
                total["bins"][b] = total["bins"].get(b, 0) + t
        for k, (docs, nbytes) in r["unmatched"].items():
            unmatched[k][0] += docs
            unmatched[k][1] += nbytes
        schemas.append(pa.ipc.read_schema(pa.py_buffer(base64.b64decode(r["schema"]))))
    for total in sources.values():
        total["tokens"] /= TOKEN_UNITS
        # in bin order: the plan sums over them as floats
        total["bins"] = {b: total["bins"][b] / TOKEN_UNITS for b in sorted(total["bins"], key=int)}
    return sources, dict(unmatched), schemas


# ---------------------------------------------------------------------------------------------
# Plan: expected epochs per source, on the driver (a few numbers per source)


@dataclass
class SourcePlan:
    name: str
    lang: str
    available_tokens: float
    max_epochs: float
    target_tokens: float = 0.0  # what the language's share asks of this source
    planned_tokens: float = 0.0  # what it can give within its epoch cap
    coefficient: float = 0.0  # expected epochs of a document = min(coefficient * weight, max_epochs)

    @property
    def capacity(self) -> float:
        return self.available_tokens * self.max_epochs


def expected_tokens(bins: dict[str, float], coefficient: float, cap: float) -> float:
    return sum(t * min(coefficient * _bin_weight(int(b)), cap) for b, t in bins.items())


def solve_coefficient(bins: dict[str, float], target: float, cap: float) -> float:
    """The c with sum over documents of tokens * min(c * weight, cap) == target (bisection)."""
    if not bins or target <= 0:
        return 0.0
    if len(bins) == 1:
        (b,), _ = zip(*bins.items())
        return min(target / sum(bins.values()), cap) / _bin_weight(int(b))
    # Uncapped, lo gives the target exactly (caps only lower it); at hi every document is capped.
    lo = target / sum(t * _bin_weight(int(b)) for b, t in bins.items())
    hi = cap / min(_bin_weight(int(b)) for b in bins)
    if expected_tokens(bins, hi, cap) <= target:
        return hi
    for _ in range(100):  # halving the ratio hi/lo: as precise for weights of 2**-256 as of 1
        mid = math.sqrt(lo * hi)
        if expected_tokens(bins, mid, cap) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def plan_mix(section: MixSection, census: dict[str, dict]) -> dict[str, SourcePlan]:
    plans = {s.name: SourcePlan(s.name, s.lang, census.get(s.name, {}).get("tokens", 0.0),
                                s.max_epochs or section.max_epochs) for s in section.sources}
    weights = {s.name: s.weight for s in section.sources}
    for lang, share in section.language_shares.items():
        members = [plans[s.name] for s in section.sources if s.lang == lang]
        goal = section.target_tokens * share
        total_weight = sum(weights[p.name] for p in members)
        for p in members:
            p.target_tokens = goal * weights[p.name] / total_weight
            p.planned_tokens = min(p.target_tokens, p.capacity)
        if section.rebalance_within_language:
            # Water-filling: capped sources give all they have; the rest share what is left by weight.
            open_ = [p for p in members if p.capacity > 0]
            remaining = goal
            while open_:
                w = sum(weights[p.name] for p in open_)
                capped = [p for p in open_ if remaining * weights[p.name] / w >= p.capacity]
                if not capped:
                    for p in open_:
                        p.planned_tokens = remaining * weights[p.name] / w
                    break
                for p in capped:
                    p.planned_tokens = p.capacity
                    remaining -= p.capacity
                    open_.remove(p)
    for p in plans.values():
        p.coefficient = solve_coefficient(census.get(p.name, {}).get("bins", {}), p.planned_tokens, p.max_epochs)
    return plans


def repeated_rows(repeats: np.ndarray, size: int):
    """(row, repeat index) pairs, row i of a batch `repeats[i]` times, copy by copy: repeat 0 of every
    drawn row in row order, then repeat 1 of the rows drawn twice or more, and so on. Shards pack the
    stream in this order, so copies written side by side would share a sequence, where the model
    copies the text it has just read instead of learning it again; here repeats k and k + 1 of a
    document are at least as many rows apart as the batch has rows drawn more than k + 1 times. In
    slices of at most `size`: a document drawn a million times never becomes one table."""
    rows_out, repeat_out, filled, low = [], [], 0, 0
    for high in np.unique(repeats[repeats > 0]).tolist():
        rows = np.flatnonzero(repeats >= high)  # the same rows for repeat indices low .. high - 1
        total, start = len(rows) * (high - low), 0
        while start < total:
            position = np.arange(start, min(start + size - filled, total))
            rows_out.append(rows[position % len(rows)])
            repeat_out.append((low + position // len(rows)).astype(np.int32))
            filled, start = filled + len(position), start + len(position)
            if filled == size:
                yield np.concatenate(rows_out), np.concatenate(repeat_out)
                rows_out, repeat_out, filled = [], [], 0
        low = high
    if filled:
        yield np.concatenate(rows_out), np.concatenate(repeat_out)


# ---------------------------------------------------------------------------------------------
# The stage


@register_stage
class MixStage(Stage):
    name = "mix"
    upstream = DEFAULT_STAGE
    # 2: weights clipped to 2**-256..2**256; the plan's coefficient solved on the ratio hi/lo; documents
    # without text neither drawn nor repeated; token totals summed as integers (the same in any file order).
    # Language shares scaled to sum to 1 need no version: the section hash reads them as scaled.
    # 4 (3 was used once, by 7cf6fad): each batch's rows copy by copy (repeat 0 of all, then repeat 1...),
    # no longer every copy right after its document.
    output_version = 4

    def __init__(self, cfg):
        super().__init__(cfg)
        stages = list(dict.fromkeys(s.stage or DEFAULT_STAGE for s in self.section.sources if not s.path))
        # The runner fingerprints the upstream and depends_on stages: every stage a source reads.
        self.upstream = stages[0] if stages else None
        self.depends_on = tuple(stages[1:])
        self.plans: dict[str, SourcePlan] = {}
        self.output_schema: pa.Schema | None = None
        self._lang_of = {s.name: s.lang for s in self.section.sources}
        self._report: dict = {}
        model = self.section.count_tokens_with
        tokenizer_dir = os.path.normpath(stage_dir(cfg, "tokenizer")) + os.sep
        if model and os.path.normpath(model).startswith(tokenizer_dir):
            raise ConfigError(
                f"{cfg.path}: mix.count_tokens_with: expected a copy of the tokenizer model outside "
                f"{tokenizer_dir}, got {model}: the tokenizer stage rewrites that file after every new mix, "
                f"which would make the mix run again. Copy it (e.g. to models/tokenizer.model) and set "
                f"mix.count_tokens_with to the copy")

    def _check_model(self, model: str) -> None:
        """Fail on the driver, with the key, rather than in every engine task."""
        from tokenizer.spm import SpecialTokenError

        try:
            worker_tokenizer(model).check_special_tokens()
        except (OSError, RuntimeError, SpecialTokenError) as e:
            raise ConfigError(f"{self.cfg.path}: mix.count_tokens_with: expected a SentencePiece model from "
                              f"`glmdata tokenizer train`, but {model}: {e}") from None

    def _files(self, key: str) -> list[str]:
        kind, _, where = key.partition(":")
        if kind == "stage":
            return upstream_parts(stage_dir(self.cfg, where))
        return [p for p in storage.expand(where) if p.endswith(".parquet")]

    def units(self, stage_run: StageRun) -> list[tuple[str, str]]:
        return [(key, f) for key in _inputs(self.section) for f in self._files(key)]

    def setup_driver(self, stage_run: StageRun) -> None:
        if self.section.count_tokens_with:
            self._check_model(self.section.count_tokens_with)
            encode_model = getattr(self.cfg.sections.get("encode"), "model", None)
            if encode_model and encode_model != self.section.count_tokens_with:
                log.warning("mix: tokens counted with %s, but encode.model is %s: encode will not write the "
                            "counted tokens", self.section.count_tokens_with, encode_model)
        units = self.units(stage_run)
        for key in _inputs(self.section):
            if not self._files(key):
                log.warning("mix: input %s has no Parquet files; its sources contribute nothing", key.partition(":")[2])
        census_results = stage_run.engine.map_units("mix census", Census(self.section), units)
        self.census, self.unmatched, schemas = merge_census(census_results)
        column = self.section.weight_column
        # a misspelt column would weigh every document 1, as if the setting were not there
        if column and schemas and not any(column in schema.names for schema in schemas):
            raise ConfigError(f"{self.cfg.path}: mix.weight_column: no input of the mix has a column {column!r} "
                              f"(columns: {', '.join(sorted({n for schema in schemas for n in schema.names}))})")
        self.plans = plan_mix(self.section, self.census)
        self.output_schema = output_schema(schemas)

    def process_unit(self, unit_index: int, unit: tuple[str, str], out: UnitWriter) -> None:
        key, path = unit
        coefficient = np.array([self.plans[s.name].coefficient for s in self.section.sources])
        cap = np.array([self.plans[s.name].max_epochs for s in self.section.sources])
        names = [s.name for s in self.section.sources]
        for batch in _batches(path):
            a = assign(self.section, key, batch)
            out.consumed(batch.num_rows, int(a.nbytes.sum()))
            matched = a.source >= 0
            for reason, lost in ((OTHER_INPUT, a.other_input), (NO_TEXT, a.no_text),
                                 (NO_SOURCE, ~matched & ~a.other_input & ~a.no_text)):
                if lost.any():
                    out.drop_uncounted_rows(reason, int(lost.sum()), int(a.nbytes[lost].sum()))
            epochs = np.where(matched, np.minimum(coefficient[a.source] * a.weight, cap[a.source]), 0.0)
            repeats = self._draw(batch.column("id").to_pylist(), epochs)
            unsampled = matched & (repeats == 0)
            if unsampled.any():
                out.drop_uncounted_rows(NOT_SAMPLED, int(unsampled.sum()), int(a.nbytes[unsampled].sum()))
            for rows, repeat_index in repeated_rows(repeats, ROWS_PER_WRITE):
                created = repeat_index > 0
                out.created(int(created.sum()), int(a.nbytes[rows[created]].sum()))
                count_exactly(self.section, batch, a, rows)  # the drawn documents' achieved tokens
                table = self._rows(batch, rows, repeat_index, [names[i] for i in a.source[rows]])
                out.keep(table, int(a.nbytes[rows].sum()))
                for i in np.unique(a.source[rows]):
                    in_source = a.source[rows] == i
                    out.stats.extra[f"docs|{names[i]}"] += int(in_source.sum())
                    out.stats.extra[f"unique_docs|{names[i]}"] += int((in_source & ~created).sum())
                    out.stats.extra[f"tokens|{names[i]}"] += float(a.tokens[rows[in_source]].sum())
                    out.stats.extra[f"bytes|{names[i]}"] += int(a.nbytes[rows[in_source]].sum())

    def _draw(self, ids: list[str], epochs: np.ndarray) -> np.ndarray:
        """Copies of each document: floor(e), plus one when hash(seed, id, floor(e)) < frac(e)."""
        whole = np.floor(epochs).astype(np.int64)
        frac = epochs - whole
        extra = np.zeros(len(ids), dtype=np.int64)
        for i in np.flatnonzero(frac > 0):
            extra[i] = seeded_uniform(self.seed, ids[i], int(whole[i])) < frac[i]
        return whole + extra

    def _rows(self, batch: pa.RecordBatch, rows: np.ndarray, repeat_index: np.ndarray, sources: list[str]) -> pa.Table:
        table = pa.Table.from_batches([batch]).take(pa.array(rows))
        suffix = pa.array([f"#{k}" if k else "" for k in repeat_index.tolist()], pa.string())
        table = table.set_column(table.schema.get_field_index("id"), "id",
                                 pc.binary_join_element_wise(table.column("id"), suffix, ""))
        # A document without a language (a curated dump that skipped langid) takes its source's.
        source_lang = pa.array([self._lang_of[name] for name in sources], pa.string())
        lang = pc.coalesce(table.column("lang"), source_lang) if "lang" in table.schema.names else source_lang
        table = table.drop_columns([c for c in ("lang", *dict(MIX_COLUMNS)) if c in table.schema.names])
        table = table.append_column("lang", lang)
        table = table.append_column("mix_source", pa.array(sources, pa.string()))
        table = table.append_column("mix_repeat", pa.array(repeat_index, pa.int32()))
        return conform(table, self.output_schema)

    def execute(self, stage_run: StageRun) -> StageStats:
        stats = super().execute(stage_run)
        self._report = build_report(self.section, self.plans, self.census, self.unmatched, stats)
        for warning in self._report["warnings"]:
            log.warning("mix: %s", warning)
        print_report(self._report)
        return stats

    def report_data(self, stage_run: StageRun) -> dict:
        return self._report


def output_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for every output file: the union of the inputs' columns, then the mix columns."""
    mix_names = {c for c, _ in MIX_COLUMNS}
    inputs = [pa.schema([f for f in s if f.name not in mix_names]) for s in schemas]
    base = pa.unify_schemas(inputs, promote_options="permissive") if inputs else pa.schema([])
    if "lang" not in base.names:
        base = base.append(pa.field("lang", pa.string()))
    return pa.schema(list(base) + [pa.field(c, t) for c, t in MIX_COLUMNS])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order; columns it lacks are null (optional upstream columns)."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.schema.names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


# ---------------------------------------------------------------------------------------------
# Report: target against achieved


def build_report(section: MixSection, plans: dict[str, SourcePlan], census: dict, unmatched: dict,
                 stats: StageStats) -> dict:
    extra = stats.extra
    sources, warnings = {}, []
    for s in section.sources:
        p, c = plans[s.name], census.get(s.name, {})
        achieved = extra.get(f"tokens|{s.name}", 0.0)
        available = c.get("tokens", 0.0)
        sources[s.name] = {
            "lang": s.lang, "input": s.input_key.partition(":")[2], "weight": s.weight,
            "available_docs": c.get("docs", 0), "available_bytes": c.get("bytes", 0),
            "available_tokens": round(available), "exact_token_docs": c.get("exact_docs", 0),
            "token_counts": _exactness(c.get("exact_docs", 0), c.get("docs", 0)),
            "measured_bytes_per_token": _ratio(c.get("exact_bytes", 0), c.get("exact_tokens", 0)),
            "target_tokens": round(p.target_tokens), "planned_tokens": round(p.planned_tokens),
            "achieved_tokens": round(achieved), "docs": int(extra.get(f"docs|{s.name}", 0)),
            "unique_docs": int(extra.get(f"unique_docs|{s.name}", 0)),
            "bytes": int(extra.get(f"bytes|{s.name}", 0)),
            "epochs": round(achieved / available, 4) if available else 0.0, "max_epochs": p.max_epochs,
        }
        if not c.get("docs"):
            warnings.append(f"source {s.name!r} ({s.lang}) has no documents in {s.input_key.partition(':')[2]}")
        elif p.target_tokens > p.capacity * (1 + 1e-9):
            warnings.append(
                f"source {s.name!r} ({s.lang}) is capped at {p.max_epochs:g} epochs: {p.capacity:,.0f} of the "
                f"{p.target_tokens:,.0f} tokens its weight asks for"
                + (" (its language's other sources make up the rest where they can)" if section.rebalance_within_language else ""))
    languages = {}
    total_achieved = sum(v["achieved_tokens"] for v in sources.values()) or 1
    for lang, share in section.language_shares.items():
        members = [v for v in sources.values() if v["lang"] == lang]
        target = section.target_tokens * share
        achieved = sum(v["achieved_tokens"] for v in members)
        planned = sum(v["planned_tokens"] for v in members)
        counted = {k: sum(census.get(s.name, {}).get(k, 0) for s in section.sources if s.lang == lang)
                   for k in ("docs", "exact_docs", "exact_bytes", "exact_tokens")}
        languages[lang] = {
            "target_tokens": round(target), "planned_tokens": round(planned), "achieved_tokens": achieved,
            "target_share": share, "achieved_share": round(achieved / total_achieved, 4),
            "docs": sum(v["docs"] for v in members), "unique_docs": sum(v["unique_docs"] for v in members),
            "available_tokens": sum(v["available_tokens"] for v in members),
            "token_counts": _exactness(counted["exact_docs"], counted["docs"]),
            "measured_bytes_per_token": _ratio(counted["exact_bytes"], counted["exact_tokens"]),
        }
        if planned < target * (1 - 1e-6):
            avail = languages[lang]["available_tokens"]
            warnings.append(
                f"shortfall in {lang}: {planned:,.0f} of {target:,.0f} target tokens ({planned / target:.1%}); "
                f"its sources have {avail:,} tokens (max epochs: "
                + ", ".join(f"{s.name} {plans[s.name].max_epochs:g}" for s in section.sources if s.lang == lang)
                + f"). Add {lang} data, raise max_epochs, or lower target_tokens or language_shares.{lang}")
    if unmatched:
        docs = sum(d for d, _ in unmatched.values())
        warnings.append(f"{docs:,} documents match no mix source (source|lang: "
                        + ", ".join(f"{k} {d:,}" for k, (d, _) in sorted(unmatched.items())[:8]) + ")")
    exact = sum(v["exact_token_docs"] for v in sources.values())
    avail_docs = sum(v["available_docs"] for v in sources.values())
    return {
        "target_tokens": section.target_tokens,
        "achieved_tokens": sum(v["achieved_tokens"] for v in sources.values()),
        "token_counts": _exactness(exact, avail_docs),
        "count_tokens_with": section.count_tokens_with,
        "bytes_per_token": section.bytes_per_token,
        "languages": languages, "sources": sources,
        "unmatched": {k: {"docs": d, "bytes": b} for k, (d, b) in sorted(unmatched.items())},
        "warnings": warnings,
    }


def _exactness(exact_docs: int, docs: int) -> str:
    return "exact" if docs and exact_docs == docs else ("estimated" if not exact_docs else "partly exact")


def _ratio(nbytes: int, tokens: int) -> float | None:
    return round(nbytes / tokens, 4) if tokens else None


def _percent(row: dict) -> str:
    """Achieved as a share of target; "-" for a target of 0 (a language share of 0), not "nan%"."""
    return f"{row['achieved_tokens'] / row['target_tokens']:.1%}" if row["target_tokens"] else "-"


COUNTS_SHORT = {"exact": "exact", "estimated": "est.", "partly exact": "part"}  # fits an 80-column terminal


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mix: target vs achieved tokens ({report['token_counts']} counts)", show_edge=False)
    for col in ("language / source", "target", "achieved", "%", "docs", "unique", "epochs", "max", "counts"):
        table.add_column(col, justify="left" if col.startswith("lang") else "right")
    for lang, lv in report["languages"].items():
        table.add_row(f"[bold]{lang}[/bold]", f"{lv['target_tokens']:,}", f"{lv['achieved_tokens']:,}", _percent(lv),
                      f"{lv['docs']:,}", f"{lv['unique_docs']:,}", "", "", COUNTS_SHORT[lv["token_counts"]])
        for name, sv in report["sources"].items():
            if sv["lang"] == lang:
                table.add_row(f"  {name}", f"{sv['target_tokens']:,}", f"{sv['achieved_tokens']:,}", _percent(sv),
                              f"{sv['docs']:,}", f"{sv['unique_docs']:,}", f"{sv['epochs']:.2f}", f"{sv['max_epochs']:g}",
                              COUNTS_SHORT[sv["token_counts"]])
    console = Console(stderr=True)
    console.print(table)
    measured = {lang: lv["measured_bytes_per_token"] for lang, lv in report["languages"].items()
                if lv["measured_bytes_per_token"]}
    if measured:
        console.print("mix: measured bytes per token " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items())
                      + (f" (counted with {report['count_tokens_with']})" if report["count_tokens_with"] else ""))
    if report["token_counts"] != "exact":
        console.print(f"mix: estimated counts use mix.bytes_per_token {report['bytes_per_token']}; "
                      "mix.count_tokens_with counts exactly (README: the two-pass mix)")
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] mix: {w}")
