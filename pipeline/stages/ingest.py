"""`glmdata ingest`: crawl and corpus dumps to documents (the first stage; no upstream).

One work unit per input file, streamed by pipeline.ingest; the accounting rules (what counts as a
document and as a byte in) are in pipeline/ingest/__init__.py. A configured path that matches no
file at run time is an error record (`missing_path`), and so is a directory symlink that loops back
into its own folder (`symlink_loop`, not followed); the other inputs still run; when no path
of any source matches anything, the stage stops with a config error before starting the engine.

Identity: `id` is derived from the source file and the record's offset (`doc_id`), so it is unique
per document; the record's own id (WARC-Record-ID, the configured id field) is kept in `record_id`,
since crawls repeat them. A record id seen twice in one file is counted (`duplicate_record_ids`
in stats.json's extra) and logged; a file's records are checked against its first
MAX_CHECKED_RECORD_IDS ids (the others are counted under `record_ids_unchecked`).

No record stops the stage: the readers turn what they cannot parse into error events, and a record
whose values still fail here (`unroutable_record`) or that Arrow rejects (`unwritable_row`) becomes
an error row with its file and offset; only a failed write to the workdir fails the unit.
"""
from __future__ import annotations

import functools
import logging
import os
import traceback
from dataclasses import dataclass, field
from typing import Callable, Literal

import pyarrow as pa

from pipeline import storage
from pipeline.config import ConfigError, InputGlob, bounded, register_section
from pipeline.ingest import read_file
from pipeline.ingest.events import Broken, Document, Empty, NotDocument
from pipeline.ingest.html import ExtractionBudget, Page, html_page
from pipeline.ingest.jsonl import PRESETS, FieldMap
from pipeline.ingest.sanitize import NotUtf8, clean
from pipeline.registry import register_stage
from pipeline.schema import DOC_SCHEMA, doc_id
from pipeline.stage import Stage, UnitWriter

log = logging.getLogger(__name__)

KEEP_BATCH_ROWS = 1000
KEEP_BATCH_TEXT_BYTES = 32 << 20
LOGGED_DUPLICATES = 5  # per file; the rest are only counted
# Record ids a file's later records are checked against, at most (their hashes: 71 MB of a worker's
# memory): one unit is one file, and a corpus dump of a hundred million records would otherwise hold
# every id (1M CC record ids as str: 130 MB more). Later records are still checked against these; they
# are not added (`record_ids_unchecked`).
MAX_CHECKED_RECORD_IDS = 1 << 20
# Distinct `subset_field` values a file may name. Each is a source, counted apart in every stage's stats
# and report: a field that differs per record (a URL, an id) would grow them by a key per document.
MAX_SUBSETS = 1024


class TooManySubsets(ValueError):
    """A record names a subset past the file's MAX_SUBSETS."""


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
    title_field: str | None = None  # default `title` (quality's title rule reads it); absent or not a string: null
    # A field naming each record's part of a dump that mixes several (the Pile: meta.pile_set_name). Its
    # documents' source becomes "<name>/<value>" (pile/Pile-CC, pile/PG-19), which mix.sources[].match_source
    # and quality.sources can name one by one; a record without it keeps <name>. JSON and Parquet only.
    subset_field: str | None = None
    lang: str | None = None  # a source known to be one language (e.g. "zh" for WuDao) sets `lang`

    def __post_init__(self):
        if not self.name.strip():
            raise ValueError("name: expected a non-empty source name")
        if not self.paths:
            raise ValueError("paths: expected at least one path or glob")
        if self.subset_field and self.format in ("warc", "wet", "arc"):
            raise ValueError(f"subset_field: a {self.format} source has no fields; JSON lines, JSON arrays and "
                             "Parquet have")

    def field_map(self) -> FieldMap:
        base = PRESETS[self.preset] if self.preset else FieldMap()
        return FieldMap(text=self.text_field or base.text, id=self.id_field or base.id,
                        url=self.url_field or base.url, date=self.date_field or base.date,
                        title=self.title_field or base.title, subset=self.subset_field)


@register_section("ingest")
@dataclass
class IngestSection:
    sources: list[SourceSection] = field(default_factory=list)
    # CommonCrawl cuts payloads at 1 MiB; 64 MiB leaves room for whole-book JSON lines while a
    # pathological record is skipped unread (streamed past, reported as record_too_large).
    max_record_bytes: int = bounded(64 << 20, low=1)
    # HTML extraction budget per page (over it: `extraction_budget` error). resiliparse's main-content
    # extraction is quadratic in nesting depth (bench/hostile.py; 100k nested <div> took 573 s);
    # real pages in ../shared/data nest at most 94 deep (figures in the README's reliability section).
    # A depth pre-scan, not a timer, enforces it: linear, the same result on every machine, and it
    # works in any worker thread (Spark's Python worker, Beam's DirectRunner).
    max_html_depth: int = bounded(2000, low=16)
    max_html_bytes: int = bounded(16 << 20, low=1 << 10)  # CommonCrawl truncates at 1 MiB
    # restore the list items and table rows main-content mode drops inside the article (a second
    # extraction pass; docs/benchmarks.md: labelled F1 0.849 -> 0.910, news F1 0.941 -> 0.938)
    html_list_fallback: bool = False

    def __post_init__(self):
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: expected unique names, got {names}")

    def html_extractor(self) -> Callable[[str], Page]:
        return functools.partial(html_page, budget=ExtractionBudget(self.max_html_depth, self.max_html_bytes),
                                 list_fallback=self.html_list_fallback)


@dataclass(frozen=True)
class IngestUnit:
    source: int  # index into ingest.sources
    path: str | None  # None: `pattern` matched no file
    pattern: str
    loop: str | None = None  # a symlink loop found expanding `pattern` (path: the link), not a file to read


def id_root(patterns: list[str]) -> str:
    """The folder (ending in "/") that holds every file a source's patterns can match, in the form
    `storage.expand` lists them: the common part of the folders their wildcards start in. Document ids
    hash a file's path below it with the source's name, so the same files give the same ids wherever
    they sit (another clone, a copy from local disk to gs://), and two sources reading one file still
    give distinct ids."""
    def folder(pattern: str) -> str:
        fixed = min([pattern.find(c) for c in "*?[" if c in pattern], default=len(pattern))
        folder = pattern[:pattern.rfind("/", 0, fixed) + 1]
        return folder if "://" in pattern else os.path.join(os.path.abspath(folder or "."), "")

    common = os.path.commonprefix([folder(p) for p in patterns])
    return common[:common.rfind("/") + 1]


@register_stage
class IngestStage(Stage):
    name = "ingest"
    upstream = None
    # 2: ids from the path below the source's folder (id_root), not the absolute path; 3: a damaged
    # one-stream .gz/.zst keeps the records decoded before the damage, WARC block digests are checked;
    # 4: JSON lines ending in a lone \r are one record each, pretty-printed JSON files are read record by record,
    # a Parquet string that is not UTF-8 inside a struct/list/map costs its row, not its row group;
    # 5: a byte that is not UTF-8 in pretty-printed JSON (array or objects) costs its record, not the rest of
    # the file; a raw \r in a JSON lines file's first line over max_record_bytes ends no line
    output_version = 5

    def _units(self) -> list[IngestUnit]:
        units = []
        for i, src in enumerate(self.section.sources):
            seen: set[str] = set()
            for pattern in src.paths:
                loops: list[storage.InputLoopError] = []
                files = storage.expand(pattern, loops)
                units += [IngestUnit(i, loop.link, pattern, loop=str(loop)) for loop in loops]
                if not files:
                    units.append(IngestUnit(i, None, pattern))
                for f in files:  # each real file once, whichever patterns or links reach it
                    real = f if "://" in f else os.path.realpath(f)
                    if real not in seen:
                        seen.add(real)
                        units.append(IngestUnit(i, f, pattern))
        if not any(u.path and not u.loop for u in units):
            raise ConfigError(f"{self.cfg.path}: ingest.sources: expected at least one existing input file, "
                              f"but no path matches a file: {[p for s in self.section.sources for p in s.paths]}")
        return units

    def input_paths(self) -> list[str]:
        return [u.path for u in self._units() if u.path and not u.loop]

    def units(self, stage_run) -> list[IngestUnit]:
        return self._units()

    def process_unit(self, unit_index: int, unit: IngestUnit, out: UnitWriter) -> None:
        src = self.section.sources[unit.source]
        if unit.path is None:
            out.error(unit.pattern, None, "missing_path",
                      f"ingest.sources[{unit.source}] ({src.name}): {unit.pattern!r} matches no file", 0, docs=0)
            return
        if unit.loop:
            out.error(unit.path, None, "symlink_loop", f"ingest.sources[{unit.source}] ({src.name}): {unit.loop}", 0, docs=0)
            return
        router = EventRouter(out, src, unit.path)
        for event in read_file(unit.path, src.format, src.field_map(), self.section.max_record_bytes,
                               self.section.html_extractor()):
            router.route(event)
        router.flush()
        if router.duplicates:
            out.stats.extra["duplicate_record_ids"] += router.duplicates
        if router.unchecked:
            out.stats.extra["record_ids_unchecked"] += router.unchecked


class EventRouter:
    """Sends a reader's events to the unit's output, writing documents in batches."""

    def __init__(self, out: UnitWriter, src: SourceSection, path: str):
        self.out, self.src, self.path = out, src, path
        self.id_key = f"{src.name}/{path.removeprefix(id_root(src.paths))}"  # what document ids hash
        self.kept: list[dict] = []
        self.kept_bytes: list[int] = []
        self.kept_text = 0
        self.empty: list[dict] = []
        self.empty_details: list[str] = []
        self.empty_bytes: list[int] = []
        self.subsets: set[str] = set()
        self.record_ids: set[int] = set()  # hashes of the ids seen (a false repeat: ~1 in 10^7 per file)
        self.duplicates = 0
        self.unchecked = 0  # ids past MAX_CHECKED_RECORD_IDS, not kept for the records after them

    def _row(self, event: Document | Empty, text: str) -> dict:
        return {"id": doc_id(self.id_key, event.source_offset), "record_id": clean(event.id, "the record id"),
                "text": clean(text, "the text"), "url": clean(event.url, "the URL"),
                "source": self._source(event),
                "source_file": self.path, "source_offset": event.source_offset,
                "crawl_date": clean(event.crawl_date, "the date"), "title": clean(event.title, "the title"),
                "lang": self.src.lang,
                "lang_score": 1.0 if self.src.lang else None}

    def _source(self, event: Document | Empty) -> str:
        """The source's name, or "<name>/<subset>" for a record that names its subset (`subset_field`)."""
        subset = clean(event.subset, "the subset")
        if subset and subset not in self.subsets:
            if len(self.subsets) >= MAX_SUBSETS:
                raise TooManySubsets(
                    f"ingest.sources[{self.src.name}].subset_field {self.src.subset_field!r}: this file names more than "
                    f"{MAX_SUBSETS} subsets; the field should name the few parts of a dump (the Pile has 22), "
                    f"not differ per record")
            self.subsets.add(subset)
        return f"{self.src.name}/{subset}" if subset else self.src.name

    def _count_record_id(self, record_id: str | None, offset: int) -> None:
        if record_id is None:
            return
        key = hash(record_id)
        if key in self.record_ids:
            self.duplicates += 1
            if self.duplicates <= LOGGED_DUPLICATES:
                log.warning("%s: record id %r at offset %d was seen before in this file; the documents keep "
                            "distinct ids (file + offset)", self.path, record_id, offset)
        elif len(self.record_ids) < MAX_CHECKED_RECORD_IDS:
            self.record_ids.add(key)
        else:
            self.unchecked += 1

    def route(self, event) -> None:
        out = self.out
        out.consumed(getattr(event, "docs", 1), event.nbytes)
        if isinstance(event, (Document, Empty)):
            try:
                self._count_record_id(event.id, event.source_offset)
                row = self._row(event, event.text if isinstance(event, Document) else "")
            except NotUtf8 as e:
                out.error(self.path, event.source_offset, "invalid_utf8", str(e), event.nbytes,
                          doc_id=event.id if event.id and event.id.isascii() else None)
                return
            except TooManySubsets as e:
                out.error(self.path, event.source_offset, "too_many_subsets", str(e), event.nbytes)
                return
            except Exception as e:  # any other failure on this record's values: its own error row
                out.error(self.path, event.source_offset, "unroutable_record",
                          f"{type(e).__name__}: {e}\n{traceback.format_exc()}", event.nbytes)
                return
            if isinstance(event, Document) and row["text"].strip():
                self.kept.append(row)
                self.kept_bytes.append(event.nbytes)
                self.kept_text += len(row["text"])
                if len(self.kept) >= KEEP_BATCH_ROWS or self.kept_text >= KEEP_BATCH_TEXT_BYTES:
                    self.flush()
            else:
                self.empty.append(row)
                self.empty_details.append(event.detail if isinstance(event, Empty) else "only control characters")
                self.empty_bytes.append(event.nbytes)
        elif isinstance(event, NotDocument):
            out.drop_uncounted_rows(event.reason, event.docs, event.nbytes)
        elif isinstance(event, Broken):
            out.error(self.path, event.offset, event.reason, event.message, event.nbytes,
                      doc_id=event.doc_id, docs=event.docs)
        else:
            raise TypeError(f"unknown ingest event {event!r}")

    def _batch(self, rows: list[dict], sizes: list[int]) -> tuple[pa.Table, int, list[int]]:
        """(table, its input bytes, indices of the rows in it). A row Arrow rejects becomes an error
        row instead of failing the batch (the readers' checks should leave none: the last guard)."""
        try:
            return pa.Table.from_pylist(rows, DOC_SCHEMA), sum(sizes), list(range(len(rows)))
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            tables, nbytes, kept = [], 0, []
            for i, (row, size) in enumerate(zip(rows, sizes)):
                try:
                    tables.append(pa.Table.from_pylist([row], DOC_SCHEMA))
                except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
                    self.out.error(self.path, row["source_offset"], "unwritable_row", f"{type(e).__name__}: {e}",
                                   size, doc_id=row["id"])
                    continue
                nbytes += size
                kept.append(i)
            return (pa.concat_tables(tables) if tables else DOC_SCHEMA.empty_table()), nbytes, kept

    def flush(self) -> None:
        if self.kept:
            table, nbytes, _ = self._batch(self.kept, self.kept_bytes)
            self.out.keep(table, nbytes)
            self.kept, self.kept_bytes, self.kept_text = [], [], 0
        if self.empty:
            table, nbytes, rows = self._batch(self.empty, self.empty_bytes)
            self.out.reject(table, "empty_text", nbytes, [self.empty_details[i] for i in rows])
            self.empty, self.empty_details, self.empty_bytes = [], [], []
