"""What a stage is: pure logic over work units, run by an engine, written to the output contract.

    <workdir>/<stage>/data/part-NNNNN.parquet            kept documents (zstd)
    <workdir>/<stage>/rejected/<reason>/part-NNNNN.parquet
    <workdir>/<stage>/errors/part-NNNNN.parquet          unreadable input: file, offset, error
    <workdir>/<stage>/stats.json  and  _SUCCESS

A *work unit* is a picklable description of a slice of input (an input file, an upstream Parquet
file). The engine (Spark or Beam) runs `Stage.process_unit` on its workers, one task per unit; each
unit writes its own files named by the unit's index, so a retried task overwrites rather than
duplicates, and the output depends on the input alone, never on the number of workers.
`process_unit` returns only a small dict of counts, which is all that reaches the driver.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import doc_profile, storage
from pipeline.config import RunConfig, input_path_values
from pipeline.schema import ERROR_SCHEMA, REJECT_DETAIL, REJECT_REASON, reject_reason_slug, text_bytes
from pipeline.selection import NOT_READ, Selection, rows_read, split_selected

log = logging.getLogger(__name__)


class ConservationError(AssertionError):
    """A stage lost or invented documents or bytes: in + created != kept + dropped + errors."""


# ---------------------------------------------------------------------------------------------
# Counting


@dataclass
class Counts:
    docs: int = 0
    bytes: int = 0

    def add(self, docs: int, nbytes: int) -> None:
        self.docs += int(docs)
        self.bytes += int(nbytes)


@dataclass
class StageStats:
    """Counts of one unit, or summed over a stage. `in + created == kept + dropped + errors`."""

    input: Counts = field(default_factory=Counts)
    created: Counts = field(default_factory=Counts)  # documents made by splitting others
    kept: Counts = field(default_factory=Counts)
    dropped: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    errors: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    kept_text_bytes: int = 0  # UTF-8 bytes of the kept documents' text as written
    extra: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # stage-specific sums
    profile: dict = field(default_factory=doc_profile.empty_profile)  # for the report (pipeline/doc_profile.py)

    def to_dict(self) -> dict:
        return {
            "in": vars(self.input).copy(),
            "created": vars(self.created).copy(),
            "kept": vars(self.kept).copy(),
            "dropped": {k: vars(v).copy() for k, v in sorted(self.dropped.items())},
            "errors": {k: vars(v).copy() for k, v in sorted(self.errors.items())},
            "kept_text_bytes": self.kept_text_bytes,
            "extra": dict(sorted(self.extra.items())),
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "StageStats":
        s = cls()
        s.input = Counts(**d["in"])
        s.created = Counts(**d.get("created", {"docs": 0, "bytes": 0}))
        s.kept = Counts(**d["kept"])
        for k, v in d["dropped"].items():
            s.dropped[k] = Counts(**v)
        for k, v in d["errors"].items():
            s.errors[k] = Counts(**v)
        s.kept_text_bytes = d.get("kept_text_bytes", 0)
        for k, v in d.get("extra", {}).items():
            s.extra[k] = v
        s.profile = d.get("profile") or doc_profile.empty_profile()
        return s

    def merge(self, other: "StageStats") -> None:
        self.input.add(other.input.docs, other.input.bytes)
        self.created.add(other.created.docs, other.created.bytes)
        self.kept.add(other.kept.docs, other.kept.bytes)
        for k, v in other.dropped.items():
            self.dropped[k].add(v.docs, v.bytes)
        for k, v in other.errors.items():
            self.errors[k].add(v.docs, v.bytes)
        self.kept_text_bytes += other.kept_text_bytes
        for k, v in other.extra.items():
            self.extra[k] += v
        doc_profile.merge(self.profile, other.profile)

    def check_conservation(self, where: str) -> None:
        for unit in ("docs", "bytes"):
            src = getattr(self.input, unit) + getattr(self.created, unit)
            out = (getattr(self.kept, unit) + sum(getattr(c, unit) for c in self.dropped.values())
                   + sum(getattr(c, unit) for c in self.errors.values()))
            if src != out:
                raise ConservationError(
                    f"{where}: {unit} in ({src}) != kept + dropped + errors ({out}): {json.dumps(self.to_dict())}")


# ---------------------------------------------------------------------------------------------
# Writing one unit's output


# Where a unit lists the files it left under temporary names (UnitWriter), for the stage's commit.
PENDING = "_pending"


def pending_file(stage_dir: str, part: str) -> str:
    return storage.join(stage_dir, PENDING, part + ".json")


class UnitWriter:
    """Routes one unit's rows to data/, rejected/<reason>/ and errors/, counting as it goes.

    `stage_dir` is the run's private folder, committed whole when the stage finishes. Where folders do
    not rename (object stores), the commit copies every file, and a file's rename is a copy too: the
    files then keep their temporary names, listed in PENDING/<part>.json once all are written, and the
    commit copies each once, to its name. A failed attempt's files are in no list; a duplicate attempt
    that finishes lists its own, which hold the same rows (a unit's output is determined by its input)."""

    def __init__(self, stage_dir: str, stage_name: str, unit_index: int, uncompressed: tuple[str, ...] = ()):
        self.stage_dir = stage_dir
        self.stage_name = stage_name
        self.part = f"part-{unit_index:05d}.parquet"
        self.stats = StageStats()
        self._keep_temporary_names = not storage.renames_folders(stage_dir)
        self._kept = self._sink("data", uncompressed=uncompressed)
        self._rejected: dict[str, storage.ParquetSink] = {}
        self._errors = self._sink("errors", schema=ERROR_SCHEMA)

    def _sink(self, *folders: str, schema: pa.Schema | None = None,
              uncompressed: tuple[str, ...] = ()) -> storage.ParquetSink:
        return storage.ParquetSink(storage.join(self.stage_dir, *folders, self.part), schema,
                                   keep_temporary_name=self._keep_temporary_names, uncompressed=uncompressed)

    # -- counting what came in
    def consumed(self, docs: int, nbytes: int) -> None:
        self.stats.input.add(docs, nbytes)

    def created(self, docs: int, nbytes: int) -> None:
        self.stats.created.add(docs, nbytes)

    # -- where it went
    def keep(self, rows: pa.RecordBatch | pa.Table, nbytes: int) -> None:
        """Kept documents; `nbytes` is what they account for in this stage's input bytes."""
        self.stats.kept.add(rows.num_rows, nbytes)
        if rows.num_rows:
            if "text" in rows.schema.names:  # encode may keep token ids only
                self.stats.kept_text_bytes += text_bytes(rows.column("text"))
            self._kept.write(rows)
            table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
            doc_profile.record(self.stats.profile, table, doc_profile.KEPT, self.stage_name)

    def reject(self, rows: pa.RecordBatch | pa.Table, reason: str, nbytes: int, details: list | None = None) -> None:
        """Dropped documents, kept for inspection under rejected/<reason>/."""
        if rows.num_rows == 0:
            return
        self.stats.dropped[reason].add(rows.num_rows, nbytes)
        table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
        table = table.append_column(REJECT_REASON, pa.array([reason] * table.num_rows, pa.string()))
        table = table.append_column(REJECT_DETAIL, pa.array(details or [None] * table.num_rows, pa.string()))
        slug = reject_reason_slug(reason)
        sink = self._rejected.get(slug)
        if sink is None:
            sink = self._rejected[slug] = self._sink("rejected", slug)
        sink.write(table)
        doc_profile.record(self.stats.profile, table, reason, self.stage_name, details)

    def only_selected(self, batch: pa.RecordBatch, selected: np.ndarray | None) -> pa.RecordBatch:
        """The `selected` rows of `batch` (None: all), those a later stage reads; the others are
        received and counted under NOT_READ."""
        batch, others, other_bytes = split_selected(batch, selected)
        if others:
            self.consumed(others, other_bytes)
            self.drop_uncounted_rows(NOT_READ, others, other_bytes)
        return batch

    def drop_uncounted_rows(self, reason: str, docs: int, nbytes: int) -> None:
        """Input that is not a document (a request record, an image): counted, nothing to write."""
        self.stats.dropped[reason].add(docs, nbytes)

    def error(self, source_file: str, offset: int | None, reason: str, message: str, nbytes: int,
              doc_id: str | None = None, docs: int = 1) -> None:
        """Unreadable input; `docs` is how many input documents it accounts for (0 for a file-level
        error such as a truncated tail, counted under its reason with docs=0 but bytes>0)."""
        self.stats.errors[reason].add(docs, nbytes)
        self._errors.write(pa.RecordBatch.from_pylist([{
            "stage": self.stage_name, "source_file": source_file, "source_offset": offset, "reason": reason,
            "message": message[:4000], "bytes": nbytes, "doc_id": doc_id}], ERROR_SCHEMA))

    def close(self) -> dict:
        sinks = [self._kept, *self._rejected.values(), self._errors]
        for sink in sinks:
            sink.close()
        pending = {self._below_stage(s.uri): self._below_stage(s.written) for s in sinks
                   if s.written is not None and s.written != s.uri}
        if pending:
            storage.write_text(pending_file(self.stage_dir, self.part), json.dumps(pending, sort_keys=True))
        return self.stats.to_dict()

    def _below_stage(self, uri: str) -> str:
        return uri[len(self.stage_dir):].lstrip("/")

    def abort(self) -> None:
        self._kept.abort()
        for sink in self._rejected.values():
            sink.abort()
        self._errors.abort()


# ---------------------------------------------------------------------------------------------
# Stages


class Stage:
    """A pipeline stage. Subclasses set `name` and `upstream` and implement `units`/`process_unit`
    (map stages) or override `execute` (stages with a shuffle, which use the engine directly)."""

    name: ClassVar[str]
    upstream: ClassVar[str | None] = None  # the stage whose data/ this one reads; None: raw inputs
    depends_on: ClassVar[tuple[str, ...]] = ()  # other finished stages it reads (e.g. the tokenizer)
    # Raised when the code comes to write other output for the same config and input (ingest's document
    # ids): a stage finished by the older code then re-runs, and with it every stage after it.
    output_version: ClassVar[int] = 1

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.section = cfg.section(self.name)
        self.seed = cfg.run.seed
        # The documents a later stage reads (None: all); the others are counted under NOT_READ.
        self.selection: Selection | None = None

    def __getstate__(self) -> dict:
        # What a stage builds lazily (its cached_property values: models, rule sets, local copies of
        # files) is built again in each worker process, never pickled there: models do not pickle,
        # blocklists hash with a salt of their own process, a local copy's path is this machine's. The
        # attribute the class resolves decides: a subclass may set a value of its own under a base's lazy name.
        return {name: value for name, value in self.__dict__.items()
                if not isinstance(getattr(type(self), name, None), functools.cached_property)}

    # -- identity of a run, for skipping finished stages
    def config_hash(self) -> str:
        reads = f"-reads{self.selection.fingerprint()}" if self.selection is not None else ""
        version = f"-v{self.output_version}" if self.output_version > 1 else ""  # 1 leaves the hash as it was
        return self.cfg.section_hash(self.name) + f"-seed{self.seed}" + reads + version

    def input_paths(self) -> list[str]:
        """Files this stage reads besides its upstream (whose _SUCCESS stands for it): by default every
        file the section names as an InputPath (blocklists, word lists, models), each once (several keys,
        and each `quality.sources` entry, name the same lists)."""
        patterns = dict.fromkeys(input_path_values(self.section))
        return list(dict.fromkeys(f for pattern in patterns for f in storage.expand(pattern)))

    def selected(self, batch: pa.RecordBatch) -> np.ndarray | None:
        """The rows of `batch` a later stage reads (None: all of them)."""
        return rows_read(self.selection, batch)

    # -- map stages
    def units(self, stage_run: "StageRun") -> list[Any]:
        """Work units, in a deterministic order. Default: the upstream's Parquet files."""
        return upstream_parts(stage_run.upstream_dir)

    def process_unit(self, unit_index: int, unit: Any, out: UnitWriter) -> None:
        raise NotImplementedError

    def report_data(self, stage_run: "StageRun") -> dict:
        """Small aggregates for `glmdata report` (histograms, target vs achieved), computed on the
        engine after `execute`; stored under "report" in stats.json. Default: none."""
        return {}

    def setup_driver(self, stage_run: "StageRun") -> None:
        """Driver-side preparation before units run (e.g. read a small aggregate, kept in a plain attribute:
        a cached_property value is built again on each worker). Default: nothing."""

    def uncompressed_columns(self) -> tuple[str, ...]:
        """Columns of data/ written without zstd, whose encoding compresses them already (called on the
        workers). Default: none."""
        return ()

    def execute(self, stage_run: "StageRun") -> StageStats:
        """Run every unit on the engine and sum their counts."""
        self.setup_driver(stage_run)
        units = self.units(stage_run)
        task = UnitTask(self, stage_run.tmp_dir)
        results = stage_run.engine.map_units(self.name, task, list(enumerate(units)))
        total = StageStats()
        for r in results:
            total.merge(StageStats.from_dict(r))
        total.extra["units"] = len(units)
        return total


@dataclass
class UnitTask:
    """The picklable callable an engine runs on its workers: one unit in, a counts dict out."""

    stage: Stage
    out_dir: str

    def __call__(self, indexed_unit: tuple[int, Any]) -> dict:
        index, unit = indexed_unit
        out = UnitWriter(self.out_dir, self.stage.name, index, self.stage.uncompressed_columns())
        try:
            self.stage.process_unit(index, unit, out)
        except BaseException:
            out.abort()
            raise
        return out.close()


def upstream_parts(upstream_dir: str | None) -> list[str]:
    if upstream_dir is None:
        return []
    data = storage.join(upstream_dir, "data")
    return [p for p in storage.expand(data) if p.endswith(".parquet")]


@dataclass
class BatchResult:
    """What a map stage decides for one batch of documents.

    `rows` are the documents after the stage (new columns, normalised text); `reasons[i]` is None
    to keep row i, else the first rule it failed. When rows are 1:1 with the input batch, byte
    accounting uses the input sizes; a stage that splits documents sets `source_bytes` and
    `created` (documents and bytes that did not exist in the input)."""

    rows: pa.RecordBatch | pa.Table
    reasons: list[str | None]
    details: list[str | None] | None = None
    source_bytes: list[int] | None = None
    created_docs: int = 0
    created_bytes: int = 0
    extra: dict[str, float] | None = None  # stage-specific sums, added to StageStats.extra


class MapStage(Stage):
    """A stage that decides document by document: implement `process_batch`.

    Reads the upstream Parquet in batches, so memory is bounded by the batch size. A batch that
    raises is retried row by row; the rows that still fail go to errors/ with their source file and
    offset, and the rest of the batch goes on."""

    batch_size: ClassVar[int] = 1024

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        raise NotImplementedError

    def read_columns(self, schema: pa.Schema) -> list[str] | None:
        """The upstream columns the stage reads and passes on (None: all of them)."""
        return None

    def process_unit(self, unit_index: int, unit: str, out: UnitWriter) -> None:
        pf = pq.ParquetFile(storage.open_input(unit))
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=self.read_columns(pf.schema_arrow)):
            batch = out.only_selected(batch, self.selected(batch))
            if batch.num_rows:
                self._process_guarded(batch, out)

    def _process_guarded(self, batch: pa.RecordBatch, out: UnitWriter) -> None:
        in_bytes = pc.binary_length(batch.column("text")).fill_null(0).to_pylist()
        out.consumed(batch.num_rows, sum(in_bytes))
        try:
            result = self.process_batch(batch)
        except Exception:
            if batch.num_rows == 1:
                row = batch.to_pylist()[0]
                out.error(row.get("source_file") or "", row.get("source_offset"), "exception",
                          traceback.format_exc(), in_bytes[0], doc_id=row.get("id"))
                return
            out.consumed(-batch.num_rows, -sum(in_bytes))  # re-counted row by row
            for i in range(batch.num_rows):
                self._process_guarded(batch.slice(i, 1), out)
            return
        self._route(result, in_bytes, out)

    def _route(self, result: BatchResult, in_bytes: list[int], out: UnitWriter) -> None:
        rows = result.rows
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        sizes = result.source_bytes if result.source_bytes is not None else in_bytes
        if len(sizes) != table.num_rows or len(result.reasons) != table.num_rows:
            raise ValueError(f"{self.name}: process_batch returned {table.num_rows} rows, "
                             f"{len(result.reasons)} reasons and {len(sizes)} sizes")
        if result.created_docs:
            out.created(result.created_docs, result.created_bytes)
        for key, value in (result.extra or {}).items():
            out.stats.extra[key] += value
        reasons = result.reasons
        keep_idx = [i for i, r in enumerate(reasons) if r is None]
        kept = table if len(keep_idx) == table.num_rows else table.take(pa.array(keep_idx, pa.int64()))
        out.keep(kept, sum(sizes[i] for i in keep_idx))
        by_reason: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(reasons):
            if r is not None:
                by_reason[r].append(i)
        for reason, idx in sorted(by_reason.items()):
            details = [result.details[i] for i in idx] if result.details else None
            out.reject(table.take(pa.array(idx, pa.int64())), reason, sum(sizes[i] for i in idx), details)


# ---------------------------------------------------------------------------------------------
# A stage's run, as the runner sets it up


@dataclass
class StageRun:
    cfg: RunConfig
    engine: Any  # pipeline.engines.Engine
    stage_dir: str  # final <workdir>/<stage>
    tmp_dir: str  # where this run writes before the commit
    upstream_dir: str | None
    started: float = field(default_factory=time.time)


def present_columns(schema: pa.Schema, wanted: Iterable[str | None]) -> list[str]:
    """The `wanted` columns that `schema` has, each once, in `wanted`'s order: what a task reads of an
    upstream part when it needs only some of its columns."""
    return [name for name in dict.fromkeys(wanted) if name in schema.names]


def iter_parquet_rows(paths: Iterable[str], columns: list[str] | None = None,
                      batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
    """Batches from Parquet files in order (used by small driver-side reads and tests)."""
    for p in paths:
        pf = pq.ParquetFile(storage.open_input(p))
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
