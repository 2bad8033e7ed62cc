"""`glmdata ingest`: crawl and corpus dumps to documents (the first stage; no upstream).

One work unit per input file, streamed by pipeline.ingest; the accounting rules (what counts as a
document and as a byte in) are in pipeline/ingest/__init__.py. A configured path that matches no
file at run time is an error record (`missing_path`) and the other inputs still run; when no path
of any source matches anything, the stage stops with a config error before starting the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from pipeline import storage
from pipeline.config import ConfigError, InputGlob, register_section
from pipeline.ingest import read_file
from pipeline.ingest.events import Broken, Document, Empty, NotDocument
from pipeline.ingest.jsonl import PRESETS, FieldMap
from pipeline.registry import register_stage
from pipeline.schema import DOC_SCHEMA, doc_id
from pipeline.stage import Stage, UnitWriter

KEEP_BATCH_ROWS = 1000
KEEP_BATCH_TEXT_BYTES = 32 << 20


@dataclass
class SourceSection:
    name: str  # written to the `source` column of every document (e.g. "cc-2024-22", "wudao")
    paths: list[InputGlob]  # files, folders or globs; local, gs://, s3:// or hdfs://
    # auto: by file name, then first bytes; json = one JSON array of objects per file (WuDao)
    format: Literal["auto", "warc", "wet", "arc", "jsonl", "json", "parquet"] = "auto"
    preset: Literal["dolma", "ccnet", "wudao"] | None = None  # field names of a known dump layout
    text_field: str | None = None  # overrides the preset; dotted paths reach nested fields
    id_field: str | None = None
    url_field: str | None = None
    date_field: str | None = None
    lang: str | None = None  # a source known to be one language (e.g. "zh" for WuDao) sets `lang`

    def __post_init__(self):
        if not self.name.strip():
            raise ValueError("name: expected a non-empty source name")
        if not self.paths:
            raise ValueError("paths: expected at least one path or glob")

    def field_map(self) -> FieldMap:
        base = PRESETS[self.preset] if self.preset else FieldMap()
        return FieldMap(text=self.text_field or base.text, id=self.id_field or base.id,
                        url=self.url_field or base.url, date=self.date_field or base.date)


@register_section("ingest")
@dataclass
class IngestSection:
    sources: list[SourceSection] = field(default_factory=list)
    # CommonCrawl cuts payloads at 1 MiB; 64 MiB leaves room for whole-book JSON lines while a
    # pathological record is skipped unread (streamed past, reported as record_too_large).
    max_record_bytes: int = 64 << 20

    def __post_init__(self):
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: expected unique names, got {names}")
        if self.max_record_bytes <= 0:
            raise ValueError("max_record_bytes: expected a positive number of bytes")


@dataclass(frozen=True)
class IngestUnit:
    source: int  # index into ingest.sources
    path: str | None  # None: `pattern` matched no file
    pattern: str


@register_stage
class IngestStage(Stage):
    name = "ingest"
    upstream = None

    def _units(self) -> list[IngestUnit]:
        units = []
        for i, src in enumerate(self.section.sources):
            seen: set[str] = set()
            for pattern in src.paths:
                files = storage.expand(pattern)
                if not files:
                    units.append(IngestUnit(i, None, pattern))
                units += [IngestUnit(i, f, pattern) for f in files if f not in seen]
                seen.update(files)
        if not any(u.path for u in units):
            raise ConfigError(f"{self.cfg.path}: ingest.sources: expected at least one existing input file, "
                              f"but no path matches a file: {[p for s in self.section.sources for p in s.paths]}")
        return units

    def input_paths(self) -> list[str]:
        return [u.path for u in self._units() if u.path]

    def units(self, stage_run) -> list[IngestUnit]:
        return self._units()

    def process_unit(self, unit_index: int, unit: IngestUnit, out: UnitWriter) -> None:
        src = self.section.sources[unit.source]
        if unit.path is None:
            out.error(unit.pattern, None, "missing_path",
                      f"ingest.sources[{unit.source}] ({src.name}): {unit.pattern!r} matches no file", 0, docs=0)
            return
        router = EventRouter(out, src, unit.path)
        for event in read_file(unit.path, src.format, src.field_map(), self.section.max_record_bytes):
            router.route(event)
        router.flush()


class EventRouter:
    """Sends a reader's events to the unit's output, writing documents in batches."""

    def __init__(self, out: UnitWriter, src: SourceSection, path: str):
        self.out, self.src, self.path = out, src, path
        self.kept: list[dict] = []
        self.kept_bytes = 0
        self.kept_text = 0
        self.empty: list[dict] = []
        self.empty_details: list[str] = []
        self.empty_bytes = 0

    def _row(self, event: Document | Empty, text: str) -> dict:
        return {"id": event.id or doc_id(self.path, event.source_offset), "text": text, "url": event.url,
                "source": self.src.name, "source_file": self.path, "source_offset": event.source_offset,
                "crawl_date": event.crawl_date, "lang": self.src.lang,
                "lang_score": 1.0 if self.src.lang else None}

    def route(self, event) -> None:
        out = self.out
        out.consumed(getattr(event, "docs", 1), event.nbytes)
        if isinstance(event, Document):
            self.kept.append(self._row(event, event.text))
            self.kept_bytes += event.nbytes
            self.kept_text += len(event.text)
            if len(self.kept) >= KEEP_BATCH_ROWS or self.kept_text >= KEEP_BATCH_TEXT_BYTES:
                self.flush()
        elif isinstance(event, Empty):
            self.empty.append(self._row(event, ""))
            self.empty_details.append(event.detail)
            self.empty_bytes += event.nbytes
        elif isinstance(event, NotDocument):
            out.drop_uncounted_rows(event.reason, event.docs, event.nbytes)
        elif isinstance(event, Broken):
            out.error(self.path, event.offset, event.reason, event.message, event.nbytes,
                      doc_id=event.doc_id, docs=event.docs)
        else:
            raise TypeError(f"unknown ingest event {event!r}")

    def flush(self) -> None:
        if self.kept:
            self.out.keep(pa.RecordBatch.from_pylist(self.kept, DOC_SCHEMA), self.kept_bytes)
            self.kept, self.kept_bytes, self.kept_text = [], 0, 0
        if self.empty:
            self.out.reject(pa.Table.from_pylist(self.empty, DOC_SCHEMA), "empty_text", self.empty_bytes,
                            self.empty_details)
            self.empty, self.empty_details, self.empty_bytes = [], [], 0
