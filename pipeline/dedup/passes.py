"""The two map passes of the dedup stage, the same on every engine.

1. `SignatureTask`: one task per upstream part. For every document: its node number
   (part << 32 | row, stable and ordered like the input), exact-duplicate keys (normalized text,
   URL), the survivor rule's keys (quality step, copy noise, crawl date, length), MinHash LSH band
   keys and, when candidates are verified, the set of shingle hashes. Written to a file of
   `<work>/signatures/` (`storage.scratch_sink`: part-N.parquet; on an object store, a name of the
   task's attempt) whose name the task returns: the later steps read the files the tasks returned.
   Keys and shingles come from the text as quality received it (`q_text_before_rewrite` where
   quality's line rules changed it), so copies of a page that the rules cut differently still match.
2. `AssignmentTask`: one task per upstream part. Joins the part with its slice of the cluster
   assignment table (`<work>/assign/part=N/`, written by the engine, which names its files in the
   folder's listing: `storage.write_listing`) and writes the stage output:
   survivors and singletons to data/ with `dup_cluster_id`/`dup_cluster_size`, duplicates to
   rejected/<reason>/ with the survivor's id (and its run, when it is an indexed document),
   unreadable rows to errors/; and, when the run appends to a dedup index, its documents'
   signature rows with their survivors to the index's runs/<run>/ (docs and keys, part-N.parquet).

Between them the engine (Spark: `spark_dedup`, Beam: `beam_dedup`) turns signatures into
assignments: only documents in a cluster of two or more appear in the assignment table.
"""
from __future__ import annotations

import email.utils
import hashlib
import math
import re
import traceback
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from filters.copy_noise import copy_noise
from filters.minhash import MinHasher, Shingling, band_hashes, is_chinese
from filters.paragraphs import paragraph_keys, remove_paragraphs
from pipeline import storage
from pipeline.dedup.index import index_node, shingle_bytes, shingle_lists, write_run_part
from pipeline.schema import TEXT_BEFORE_REWRITE
from pipeline.selection import Selection, rows_read, split_selected
from pipeline.stage import UnitWriter, present_columns

ROW_BITS = 32  # node = part << 32 | row: up to 4 billion rows per part, 2 billion parts

# The upstream columns the signature pass reads: what its keys come from, and what the selection
# reads. A part of the whole pipeline carries ~70 (the signals of langid, quality and pii besides).
SIGNATURE_INPUTS = ("id", "text", TEXT_BEFORE_REWRITE, "crawl_date", "lang", "url", "q_score", *Selection.COLUMNS)

SIGNATURE_SCHEMA = pa.schema([
    ("node", pa.int64()),
    ("part", pa.int32()),
    ("row", pa.int64()),
    ("id", pa.string()),
    ("text_key", pa.int64()),  # hash of the whitespace-normalized text
    ("url_key", pa.int64()),  # hash of the URL; null without one
    ("length", pa.int64()),  # characters
    ("q_score", pa.float64()),  # quality score (0 when the upstream has none)
    ("q_rank", pa.int64()),  # floor(q_score / q_score_step): scores within one step tie
    ("noise", pa.int64()),  # filters.copy_noise: padded, repeated, wrapped or mangled lines
    ("date_key", pa.string()),  # crawl_date; "~" (after every date) when unknown
    ("n_shingles", pa.int32()),
    ("bands", pa.list_(pa.int64())),  # one bucket key per band; null when not shingled
    # sorted distinct 32-bit shingle hashes, only when verifying: int32 little-endian, one binary value
    # per document, so Spark moves each set as one value and the verification reads it without conversion
    ("shingles", pa.binary()),
    ("error", pa.string()),  # why the row could not be processed; null when fine
])

ASSIGNMENT_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("cluster_id", pa.string()),  # the survivor's id
    ("cluster_size", pa.int64()),
    ("reason", pa.string()),  # null for the survivor; dup_exact, dup_url or dup_near (+ _existing)
    ("survivor_run", pa.string()),  # the indexed run the survivor belongs to; null for this run's
])

PARAGRAPH_SCHEMA = pa.schema([
    ("part", pa.int32()),
    ("row", pa.int64()),
    ("key", pa.int64()),  # filters.paragraphs.line_key of one of the document's lines (distinct per document)
    ("lang", pa.string()),
])

REMOVAL_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("key", pa.int64()),  # a line of this document found in more surviving documents than its language allows
    ("docs", pa.int64()),  # how many
])

REASON_EXACT, REASON_URL, REASON_NEAR = "dup_exact", "dup_url", "dup_near"
REASON_PARAGRAPHS_LEFT_SHORT = "paragraph_dedup:too_short"
EXISTING = "_existing"  # suffix of the reason when the survivor is an indexed document of an earlier run
UNKNOWN_DATE = "~"
_EPOCH = re.compile(r"\d{10}(?:\.\d+)?$|\d{13}$")
_LOOSE_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


@dataclass(frozen=True)
class ParagraphParams:
    """Cross-document paragraph dedup, per language ("*": every language not named)."""

    max_docs: dict[str, int]  # a line found in more surviving documents than this is removed
    min_chars: dict[str, int]  # shorter lines (normalized characters) are never counted nor removed
    min_doc_chars: dict[str, int]  # a document left shorter than this (characters) is dropped
    samples: int  # most frequent removed lines kept for the report

    def of(self, table: dict[str, int], lang: str | None) -> int:
        lang = "zh" if is_chinese(lang) else lang
        return table.get(lang or "*", table["*"])


@dataclass(frozen=True)
class DedupParams:
    """What the map passes need from the config (picklable, small)."""

    exact: bool
    url: bool
    near: bool
    verify: bool
    num_perm: int
    seed: int
    bands: int
    rows: int
    shingling: Shingling
    q_score_step: float
    paragraphs: ParagraphParams | None = None

    def index_settings(self) -> dict:
        """What an index's signatures depend on: a later run must use the same to compare with them."""
        return {"num_perm": self.num_perm, "seed": self.seed, "bands": self.bands, "rows": self.rows,
                "verify": self.verify, "en_ngram": self.shingling.en_ngram, "zh_tokens": self.shingling.zh_tokens,
                "zh_ngram": self.shingling.zh_ngram}


def _key64(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little", signed=True)


def text_key(text: str | None) -> int:
    """Exact-duplicate key: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return _key64(" ".join(unicodedata.normalize("NFC", text or "").split()))


def date_key(value: str | None) -> str:
    """The survivor rule's crawl-date key, compared as a string: the date as UTC `YYYY-MM-DDTHH:MM:SS`, so
    dates spelled differently (ISO 8601 with `T` or a space, an offset or `Z`, ARC's YYYYMMDDhhmmss, epoch
    seconds or milliseconds as JSON dumps carry them, an HTTP date) order by time. An unreadable one that
    starts with a year is kept as written (it sorts among that year's dates); UNKNOWN_DATE (after every
    date) when absent or unreadable otherwise."""
    text = (value or "").strip()
    try:
        if text.isdigit() and len(text) in (4, 6, 8, 14):  # year, month, day, ARC's YYYYMMDDhhmmss
            when = datetime.strptime(text, "%Y%m%d%H%M%S"[:len(text) - 2])
        elif _EPOCH.match(text):  # epoch seconds (a fraction too) or milliseconds
            when = datetime.fromtimestamp(float(text) / (1000 if len(text) == 13 else 1), timezone.utc)
        elif loose := _LOOSE_DATE.match(text):  # 2024/1/5, 2024.01.05 12:00
            when = datetime(*map(int, filter(None, loose.groups())))
        elif text[:4].isdigit():
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        else:
            when = email.utils.parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError, OSError):
        return text if text[:4].isdigit() else UNKNOWN_DATE
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.isoformat(timespec="seconds")


def url_key(url: str | None) -> int | None:
    """Same-URL key: the URL without surrounding spaces and #fragment; None when there is none."""
    url = (url or "").strip().split("#", 1)[0]
    return _key64(url) if url else None


_HASHER: dict[tuple, MinHasher] = {}


def _hasher(p: DedupParams) -> MinHasher:
    key = (p.num_perm, p.seed, p.shingling)
    if key not in _HASHER:  # once per worker process: permutations are drawn from the seed
        _HASHER[key] = MinHasher(p.num_perm, p.seed, p.shingling)
    return _HASHER[key]


def signature_rows(batch: pa.RecordBatch, part: int, first_row: int, p: DedupParams) -> dict[str, list]:
    """The signature table's columns for one batch of documents (raises on bad input)."""
    n = batch.num_rows
    names = batch.schema.names
    texts = batch.column("text").to_pylist()
    if TEXT_BEFORE_REWRITE in names:
        texts = [b if b is not None else t for b, t in zip(batch.column(TEXT_BEFORE_REWRITE).to_pylist(), texts)]
    dates = batch.column("crawl_date").to_pylist() if "crawl_date" in names else [None] * n
    langs = batch.column("lang").to_pylist() if "lang" in names else [None] * n
    urls = batch.column("url").to_pylist() if "url" in names else [None] * n
    q = (pc.fill_null(batch.column("q_score").cast(pa.float64()), 0.0).to_pylist()
         if "q_score" in names else [0.0] * n)
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    cols: dict[str, list] = {
        "node": ((np.int64(part) << ROW_BITS) | rows).tolist(),
        "part": [part] * n,
        "row": rows.tolist(),
        "id": batch.column("id").to_pylist(),
        "text_key": [text_key(t) for t in texts],
        "url_key": [url_key(u) for u in urls],
        "length": [len(t or "") for t in texts],
        "q_score": q,
        "q_rank": [math.floor(v / p.q_score_step + 1e-9) for v in q],
        "noise": [copy_noise(t) for t in texts],
        "date_key": [date_key(d) for d in dates],
        "n_shingles": [0] * n,
        "bands": [None] * n,
        "shingles": [None] * n,
        "error": [None] * n,
    }
    if p.near:
        hasher = _hasher(p)
        shingles = hasher.shingle_hashes(texts, langs)
        counts = shingles.counts()
        no_shingles = pa.array(counts == 0)
        keys = band_hashes(hasher.signatures_of(shingles), p.bands, p.rows)
        cols["n_shingles"] = counts.tolist()
        cols["bands"] = pa.ListArray.from_arrays(np.arange(0, n * p.bands + 1, p.bands, dtype=np.int32),
                                                 keys.ravel(), mask=no_shingles)
        if p.verify:  # distinct shingle hashes per document, sorted, as one Arrow list column
            # the MinHash inputs (collisions change J by ~1e-4), as int32
            offsets, hashes = shingles.distinct_sets()
            cols["shingles"] = shingle_bytes(pa.ListArray.from_arrays(offsets.astype(np.int32), hashes,
                                                                      mask=no_shingles))
    return cols


@dataclass
class SignatureTask:
    """Engine task: (part index, upstream Parquet path) -> a `storage.scratch_sink` file of <sig_dir> (and of
    <para_dir>); returns counts and the files' names (None for a part with no rows)."""

    params: DedupParams
    sig_dir: str
    para_dir: str | None = None  # where the documents' paragraph keys go, when paragraphs are deduplicated
    selection: Selection | None = None  # the documents a later stage reads; rows count among those only
    batch_size: int = 1024

    def __call__(self, indexed_unit: tuple[int, str]) -> dict:
        part, path = indexed_unit
        sink = storage.scratch_sink(self.sig_dir, storage.part_name(part), SIGNATURE_SCHEMA)
        paragraphs = (storage.scratch_sink(self.para_dir, storage.part_name(part), PARAGRAPH_SCHEMA)
                      if self.para_dir else None)
        row = errors = 0
        try:
            upstream = pq.ParquetFile(storage.open_input(path))
            columns = present_columns(upstream.schema_arrow, SIGNATURE_INPUTS)
            for batch in upstream.iter_batches(batch_size=self.batch_size, columns=columns):
                batch = split_selected(batch, rows_read(self.selection, batch))[0]
                table = self._guarded(batch, part, row)
                sink.write(table)
                errors += table.num_rows - table.column("error").null_count
                if paragraphs is not None:
                    paragraphs.write(self._paragraph_rows(batch, part, row, table.column("error").to_pylist()))
                row += batch.num_rows
        except BaseException:
            sink.abort()
            if paragraphs is not None:
                paragraphs.abort()
            raise
        sink.close()
        if paragraphs is not None:
            paragraphs.close()
        return {"part": part, "docs": row, "errors": errors, "signatures": sink.written,
                "paragraphs": paragraphs.written if paragraphs is not None else None}

    def _paragraph_rows(self, batch: pa.RecordBatch, part: int, first_row: int, errors: list) -> pa.Table:
        """Each document's distinct line keys, from the text it will keep (rows in errors/ have none)."""
        p = self.params.paragraphs
        langs = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [None] * batch.num_rows
        cols: dict[str, list] = {"part": [], "row": [], "key": [], "lang": []}
        for i, (text, lang) in enumerate(zip(batch.column("text").to_pylist(), langs)):
            if errors[i] is not None:
                continue
            keys = paragraph_keys(text, lang, p.of(p.min_chars, lang))
            cols["part"] += [part] * len(keys)
            cols["row"] += [first_row + i] * len(keys)
            cols["key"] += keys
            cols["lang"] += [lang] * len(keys)
        return pa.Table.from_pydict(cols, PARAGRAPH_SCHEMA)

    def _guarded(self, batch: pa.RecordBatch, part: int, first_row: int) -> pa.Table:
        """A batch that raises is redone row by row; rows that still raise carry their error."""
        try:
            return pa.Table.from_pydict(signature_rows(batch, part, first_row, self.params), SIGNATURE_SCHEMA)
        except Exception:
            if batch.num_rows > 1:
                return pa.concat_tables([self._guarded(batch.slice(i, 1), part, first_row + i)
                                         for i in range(batch.num_rows)])
            ident = batch.column("id")[0].as_py() if "id" in batch.schema.names else None
            cols = {name: [None] for name in SIGNATURE_SCHEMA.names}
            cols.update(node=[(part << ROW_BITS) | first_row], part=[part], row=[first_row], id=[ident],
                        error=[traceback.format_exc()])
            return pa.Table.from_pydict(cols, SIGNATURE_SCHEMA)


def assignment_dir(assign_root: str, part: int) -> str:
    """Where the engine writes the assignments of one upstream part (Spark's partitionBy layout)."""
    return storage.join(assign_root, f"part={part}")


def parquet_files(folder: str) -> list[str]:
    """The Parquet files of `folder` (none when it does not exist), sorted."""
    return sorted(f for f in storage.expand(folder) if f.endswith(".parquet")) if storage.exists(folder) else []


def read_part(root: str, part: int) -> pa.Table | None:
    """The rows the engine wrote for upstream part `part` under `root` (`assignment_dir`), from the
    files its listing names (`storage.listed_files`: never a failed task attempt's); None if none."""
    files = storage.listed_files(root).get(assignment_dir(root, part), [])
    tables = [pq.read_table(storage.open_input(f)) for f in files]
    return pa.concat_tables(tables) if tables else None


@dataclass
class _PartRemovals:
    """One part's frequent lines: keys per row, documents per key, and the removed lines seen."""

    by_row: dict[int, set[int]] = field(default_factory=dict)
    frequency: dict[int, int] = field(default_factory=dict)
    samples: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # key -> (documents, lang, line)


@dataclass(frozen=True)
class IndexAppend:
    """Where a run's survivors go in the index it appends to, and under which run name and number."""

    run_dir: str
    run: str
    seq: int


@dataclass
class AssignmentTask:
    """Engine task: one upstream part + its assignments -> data/, rejected/, errors/ of the stage
    (+ the part's signatures and survivors to the index when `append` is set); returns the stage's
    counts and, with paragraph dedup, the part's most frequent removed lines ("paragraph_samples")."""

    stage_name: str
    out_dir: str
    signatures: dict[int, str]  # part -> its signature file (`SignatureTask`'s); a part without rows has none
    assign_root: str
    append: IndexAppend | None = None
    paragraphs: ParagraphParams | None = None
    removal_root: str | None = None  # <work>/para_remove/part=N/: the lines to remove from each kept document
    selection: Selection | None = None  # as SignatureTask's: the others are counted, not written
    batch_size: int = 1024

    def __call__(self, indexed_unit: tuple[int, str]) -> dict:
        part, path = indexed_unit
        out = UnitWriter(self.out_dir, self.stage_name, part)
        try:
            samples = self._write(part, path, out)
        except BaseException:
            out.abort()
            raise
        return {**out.close(), "paragraph_samples": samples}

    def _write(self, part: int, path: str, out: UnitWriter) -> list[dict]:
        assigned: dict[int, tuple[str, int, str | None, str | None]] = {}
        table = read_part(self.assign_root, part)
        if table is not None:  # column by column: a dict per row costs more than the rest of the part
            columns = [table.column(name).to_pylist() for name in ASSIGNMENT_SCHEMA.names]
            assigned = {row: (cluster, size, reason, run) for row, cluster, size, reason, run in zip(*columns)}
        sig_path = self.signatures.get(part)
        failed = {}
        if sig_path is not None:  # an empty part has none
            sig = pq.read_table(storage.open_input(sig_path), columns=["row", "error"])
            failed = {r["row"]: r["error"] for r in sig.filter(pc.is_valid(sig.column("error"))).to_pylist()}
            if self.append is not None:
                self._append_signatures(part, sig_path, assigned)
        removals = _PartRemovals()  # per call: engines run several units on one task object at once
        if self.paragraphs is not None:
            table = read_part(self.removal_root, part)
            if table is not None:
                for row, key, docs in zip(*(table.column(name).to_pylist() for name in REMOVAL_SCHEMA.names)):
                    removals.by_row.setdefault(row, set()).add(key)
                    removals.frequency[key] = docs
        row = 0
        for batch in pq.ParquetFile(storage.open_input(path)).iter_batches(batch_size=self.batch_size):
            batch = out.only_selected(batch, rows_read(self.selection, batch))
            self._route(batch, row, assigned, failed, out, removals)
            row += batch.num_rows
        # a few lines per part: returned to the driver with the counts, not written to a file and read back
        top = sorted(removals.samples.items(), key=lambda kv: (-kv[1][0], kv[0]))[:self.paragraphs.samples] \
            if removals.samples else []
        return [{"key": k, "docs": d, "lang": lang, "line": line[:500]} for k, (d, lang, line) in top]

    def _append_signatures(self, part: int, sig_path: str, assigned: dict) -> None:
        """This part's documents as index rows, each with its survivor (a rerun overwrites the same file)."""
        sig = pq.read_table(storage.open_input(sig_path), columns=["node", "row", "id", "text_key", "url_key",
                                                                   "n_shingles", "bands", "shingles", "error"])
        sig = sig.filter(pc.is_null(sig.column("error")))
        run, survivors, survivor_runs = self.append.run, [], []
        for row, doc in zip(sig.column("row").to_pylist(), sig.column("id").to_pylist()):
            cluster_id, _, _, survivor_run = assigned.get(row, (doc, 1, None, None))
            survivors.append(cluster_id)
            survivor_runs.append(survivor_run or run)
        seq = self.append.seq
        rows = sig.drop_columns(["row", "error"])
        rows = rows.set_column(0, "node", pa.array([index_node(seq, n) for n in sig.column("node").to_pylist()],
                                                   pa.int64()))
        rows = rows.set_column(rows.schema.get_field_index("shingles"), "shingles",
                               shingle_lists(rows.column("shingles").combine_chunks()))
        rows = rows.append_column("run", pa.array([run] * rows.num_rows, pa.string()))
        rows = rows.append_column("survivor", pa.array(survivors, pa.string()))
        rows = rows.append_column("survivor_run", pa.array(survivor_runs, pa.string()))
        write_run_part(self.append.run_dir, storage.part_name(part), rows)

    def _without_frequent_paragraphs(self, table: pa.Table, keep: list[int], first_row: int,
                                     removals: "_PartRemovals", out: UnitWriter) -> tuple[pa.Table, list[int], list[int], list[str]]:
        """Kept rows with their frequent lines removed: (table with the new texts, rows still kept,
        rows left too short, how many characters each of those has left)."""
        p = self.paragraphs
        texts = table.column("text").to_pylist()
        langs = table.column("lang").to_pylist() if "lang" in table.column_names else [None] * table.num_rows
        sources = table.column("source").to_pylist() if "source" in table.column_names else [None] * table.num_rows
        still, short, left = [], [], []
        for i in keep:
            remove = removals.by_row.get(first_row + i)
            if not remove:
                still.append(i)
                continue
            lang = langs[i]
            text, removed = remove_paragraphs(texts[i] or "", lang, remove, p.of(p.min_chars, lang))
            out.stats.extra["paragraphs_removed"] += len(removed)
            out.stats.extra[f"paragraph_bytes_removed:{sources[i] or '-'}:{lang or '-'}"] += \
                len((texts[i] or "").encode("utf-8", "surrogatepass")) - len(text.encode("utf-8", "surrogatepass"))
            out.stats.extra["paragraph_docs_rewritten"] += 1
            for key, line in removed:
                if key not in removals.samples:
                    removals.samples[key] = (removals.frequency[key], lang or "", line.strip())
            texts[i] = text
            if len(text.strip()) < p.of(p.min_doc_chars, lang):
                short.append(i)
                left.append(str(len(text.strip())))
            else:
                still.append(i)
        table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
        return table, still, short, left

    def _route(self, batch: pa.RecordBatch, first_row: int, assigned: dict, failed: dict, out: UnitWriter,
               removals: "_PartRemovals") -> None:
        sizes = pc.binary_length(batch.column("text")).fill_null(0).to_pylist()
        out.consumed(batch.num_rows, sum(sizes))
        ids = batch.column("id").to_pylist()
        keep: list[int] = []
        cluster_ids: list[str] = []
        cluster_sizes: list[int] = []
        rejected: dict[str, list[int]] = {}
        details: dict[str, list[str]] = {}
        for i in range(batch.num_rows):
            row = first_row + i
            if row in failed:
                rec = batch.slice(i, 1).to_pylist()[0]
                out.error(rec.get("source_file") or "", rec.get("source_offset"), "dedup_exception",
                          failed[row], sizes[i], doc_id=ids[i])
                continue
            cluster_id, size, reason, survivor_run = assigned.get(row, (ids[i], 1, None, None))
            if reason is None:
                keep.append(i)
                cluster_ids.append(cluster_id)
                cluster_sizes.append(size)
            else:
                rejected.setdefault(reason, []).append(i)
                details.setdefault(reason, []).append(
                    cluster_id if survivor_run is None else f"{cluster_id} in run {survivor_run}")
        table = pa.Table.from_batches([batch])
        if TEXT_BEFORE_REWRITE in table.column_names:  # used up by the signatures; stages between may
            table = table.drop_columns([TEXT_BEFORE_REWRITE])  # have redacted `text` but not this copy
        if removals.by_row:
            cluster = dict(zip(keep, zip(cluster_ids, cluster_sizes)))
            rewritten, keep, short, left = self._without_frequent_paragraphs(table, keep, first_row, removals, out)
            out.reject(table.take(pa.array(short, pa.int64())), REASON_PARAGRAPHS_LEFT_SHORT,
                       sum(sizes[i] for i in short), left)
            table = rewritten
            cluster_ids, cluster_sizes = [cluster[i][0] for i in keep], [cluster[i][1] for i in keep]
        kept = table.take(pa.array(keep, pa.int64()))
        kept = kept.append_column("dup_cluster_id", pa.array(cluster_ids, pa.string()))
        kept = kept.append_column("dup_cluster_size", pa.array(cluster_sizes, pa.int64()))
        out.keep(kept, sum(sizes[i] for i in keep))
        for reason, idx in sorted(rejected.items()):
            out.reject(table.take(pa.array(idx, pa.int64())), reason, sum(sizes[i] for i in idx), details[reason])
