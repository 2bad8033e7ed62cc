"""The persistent dedup index: every earlier run's documents with their survivors, so a new
snapshot is deduplicated against them without re-reading or re-hashing the old data, and reading
only the part of the index its keys can match.

    <index>/runs/<run>/docs/part-NNNNN.parquet  one file per upstream part of that run: `INDEX_SCHEMA`
                                                rows of its documents, dropped ones too (node, id, the
                                                survivor and its run, exact keys, LSH band keys,
                                                shingle set), so a new copy of a dropped document finds
                                                its survivor, as it would in one run over everything;
                                                sorted by node, in row groups of DOC_GROUP_ROWS
    <index>/runs/<run>/keys/part-NNNNN.parquet  the same documents' keys as `KEY_SCHEMA` rows (bucket,
                                                band, key, node): the exact-text key, the URL key and
                                                every LSH band key, sorted by bucket, band and key, a
                                                bucket in row groups of its own
    <index>/runs/<run>/rev-NNNNNN/<by>/         parts of <run> rewritten by the run that generation N
                        {docs,keys}/            committed, <by>, without the rows it retired (see below)
    <index>/_manifest/gen-NNNNNN.json           generation N: the settings the signatures depend on and
                                                the runs it covers (run, input fingerprint, config hash,
                                                documents; for a run with retired rows, how many and
                                                its `parts` left); the highest generation is the index
    <index>/_LOCK                               held by the one run appending, while it runs

A run finds its indexed neighbours (`find_neighbours`) in three map passes on its engine: its own
keys, bucketed the same way; one task per bucket, which reads only that bucket's row groups of the
index's key files (Parquet row-group statistics: bucket, then key range), and semi-joins them with
the new keys of the bucket; one task per indexed part with a match, which reads only the row groups
of its documents that hold a matched node. So a run reads the index's key columns (a few percent of
its bytes) once at most, less when its keys cover few row groups, and the full rows (shingle sets)
of the matched documents only; nothing of the index goes through the driver. Buckets live in row
groups, not directories, so an index holds two files per part, whatever the bucket count.

Appending is atomic: a run writes its files under runs/<run>/ (unreferenced, so invisible), then
writes generation N+1 under a temporary name and renames it into place; a run killed before that
leaves the index at generation N. Old runs' files are never rewritten. Two appenders are refused by
the lease (`pipeline.runner.WorkdirLease` on the index: created exclusively on local disks, read
back on object stores, renewed by a heartbeat; a dead holder's lease is taken over). All I/O goes
through `pipeline.storage`, so an index may live on gs:// or s3://.

Retiring: a re-run of a snapshot against its own index replaces the indexed rows of its documents
(same id and URL: `spark_dedup.with_replaced`). So that later runs no longer match a version no
release holds, the re-run retires them: the engine writes those of its own index's parts
(`Retiring`; a run that appends nowhere, or to another index, writes none), each indexed part
holding one is written again without them under runs/<its run>/rev-<N+1>/<the re-run>/ (`RetireTask`,
one engine task per part; a part left empty is written nowhere), and generation N+1 lists that run's
`parts`. Generation N still names the old files: a killed re-run leaves it whole. The re-run's name
keeps apart two runs that read generation N, one of which took the other's lease over unseen: the
loser, retiring after the winner committed, writes beside the files that commit listed, not over them
(its own commit is then refused). A run without `parts` has every file of its docs/.

Clean-up: an index keeps its last two generations and the files they list. When generation N+1
commits, the holder of the lease deletes the manifests before N and, under runs/, every file that
neither N nor N+1 lists and that was written before N was committed (`DedupIndex.delete_unused`):
parts retired two commits ago, and what killed runs left. What N lists stays for a reader that
read N before N+1 appeared; so a run reading an index it does not append to must finish before the
second commit after the generation it read, or its fetch finds files gone. A file written since N
was committed stays until the next commit, listed or not: a run may still be writing it (one that
took this run's lease over unseen, whose own commit will be refused). A killed run's resume never
lists files older than the last commit: it names its run by the number of runs in the generation it
reads (`DedupStage`), so after another run's commit it writes anew. Only listings and deletions, no
renames: the same on local disks and object stores.
"""
from __future__ import annotations

import contextlib
import json
import logging
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import WorkdirBusy, WorkdirLease

log = logging.getLogger(__name__)

FORMAT = "glmdata-dedup-index"
VERSION = 2  # 1: one file per part, read whole by every later run
RUN_BITS = 47  # an indexed node: -((seq + 1) << 47 | part << 32 | row): negative, so never a new run's node
# Runs are numbered per index, so a run reading several indexes moves the i-th one's nodes down by
# i << INDEX_SHIFT: at most MAX_RUNS runs per index and MAX_INDEXES indexes keep every node distinct.
INDEX_SHIFT = 58
MAX_RUNS = (1 << (INDEX_SHIFT - RUN_BITS)) - 1
MAX_INDEXES = 1 << (63 - INDEX_SHIFT)
BUCKET_BITS = 6  # 64 key buckets: one probe task each
DOC_GROUP_ROWS = 256  # documents per row group of a docs file: a matched node reads its group only
KEY_GROUP_ROWS = 16384  # keys per row group at most (a bucket of a part spans one or more)
TEXT_BAND, URL_BAND = -1, -2  # the `band` of exact-text and URL keys; LSH bands are 0, 1, ...

INDEX_SCHEMA = pa.schema([
    ("node", pa.int64()),
    ("id", pa.string()),
    ("run", pa.string()),
    ("survivor", pa.string()),  # the id of the document's cluster survivor (its own id when it survived)
    ("survivor_run", pa.string()),  # the run that survivor belongs to
    ("text_key", pa.int64()),
    ("url_key", pa.int64()),
    ("n_shingles", pa.int32()),
    ("bands", pa.list_(pa.int64())),
    ("shingles", pa.list_(pa.int32())),
])

# The indexed documents a run found (`find_neighbours`): `INDEX_SCHEMA` rows with the shingle sets as
# the signature table carries them (`shingle_bytes`), so they join the run's graph as they are, the
# indexed part each came from (its number in the run's list), where a re-run retires it, and whether
# it joins the graph (`MATCH_SCHEMA`'s in_graph).
NEIGHBOUR_SCHEMA = INDEX_SCHEMA.set(INDEX_SCHEMA.get_field_index("shingles"), pa.field("shingles", pa.binary())).append(
    pa.field("file", pa.int32())).append(pa.field("in_graph", pa.bool_()))

# The indexed rows a re-run replaces, written by the engine under <root>/file=N/ (`replaced_dir`).
REPLACED_SCHEMA = pa.schema([("file", pa.int32()), ("node", pa.int64())])


def shingle_bytes(sets: pa.Array) -> pa.Array:
    """list<int32> shingle sets (the index's) as binary (the signature table's: each set's int32
    values, little-endian, in one value), nulls kept; the values are not copied one by one."""
    offsets = sets.offsets.to_numpy().astype(np.int32) * 4
    data = sets.values.to_numpy().astype("<i4", copy=False)
    out = pa.Array.from_buffers(pa.binary(), len(sets), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pc.if_else(sets.is_valid(), out, pa.scalar(None, pa.binary())) if sets.null_count else out


def shingle_sets(sets: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Binary shingle sets (the signature table's) as (set offsets, int32 values): set i is
    values[offsets[i]:offsets[i + 1]], nulls empty. No copy."""
    offsets = np.frombuffer(sets.buffers()[1], np.int32, count=len(sets) + 1, offset=sets.offset * 4) // 4
    return offsets, np.frombuffer(sets.buffers()[2] or b"", "<i4", count=int(offsets[-1]))


def shingle_lists(sets: pa.Array) -> pa.Array:
    """The inverse of `shingle_bytes`."""
    offsets, values = shingle_sets(sets)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32, copy=False)),
                                    mask=sets.is_null() if sets.null_count else None)


KEY_SCHEMA = pa.schema([
    ("bucket", pa.int32()),  # top BUCKET_BITS bits of the key times a 64-bit odd constant
    ("band", pa.int32()),  # TEXT_BAND, URL_BAND or the LSH band
    ("key", pa.int64()),
    ("node", pa.int64()),
])

MATCH_SCHEMA = pa.schema([
    ("file", pa.int32()),  # an indexed part (by number)
    ("node", pa.int64()),  # a node of it
    ("in_graph", pa.bool_()),  # matched by a kind of key the run clusters by (else only by its id's keys)
])


class IndexBusy(RuntimeError):
    """Another run holds the index's lease."""


def index_node(seq: int, node: int) -> int:
    """The node number of a run's document once indexed (unique across runs, below every new node)."""
    if node >> RUN_BITS:
        raise ValueError(f"dedup index: part {node >> 32} is beyond the {1 << (RUN_BITS - 32)} parts an indexed run may have")
    if seq >= MAX_RUNS:
        raise ValueError(f"dedup index: run {seq} is beyond the {MAX_RUNS} runs an index may hold (start a new index)")
    return -(((seq + 1) << RUN_BITS) | node)


@dataclass(frozen=True)
class IndexPart:
    """One indexed part: its key file, its docs file, which of the run's indexes it belongs to, the
    indexed run that wrote it and its docs file's path in the index (as a manifest's `parts` list it)."""

    keys: str
    docs: str
    index: int = 0
    run: str = ""
    stored: str = ""


@dataclass(frozen=True)
class KeyKinds:
    """Which keys a run matches by: exact text, URL, LSH bands."""

    text: bool
    url: bool
    bands: bool


ALL_KEYS = KeyKinds(True, True, True)  # what an index stores: a later run may match by any of them


# -- layout


def key_table(docs: pa.Table, kinds: KeyKinds) -> pa.Table:
    """`KEY_SCHEMA` rows of `docs` (columns node, text_key, url_key, bands), sorted by bucket, band, key."""
    node = docs.column("node").to_numpy()
    bands, keys, nodes = [], [], []
    if kinds.text:
        bands.append(np.full(len(node), TEXT_BAND, np.int32))
        keys.append(docs.column("text_key").to_numpy())
        nodes.append(node)
    if kinds.url:
        url = docs.column("url_key")
        has = pc.is_valid(url).to_numpy(zero_copy_only=False)
        bands.append(np.full(int(has.sum()), URL_BAND, np.int32))
        keys.append(url.drop_null().to_numpy())
        nodes.append(node[has])
    if kinds.bands:
        lists = docs.column("bands").combine_chunks()
        parent = pc.list_parent_indices(lists).to_numpy()
        flat = pc.list_flatten(lists).to_numpy()
        if len(flat):
            starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
            position = np.arange(len(flat)) - np.repeat(starts, np.diff(np.r_[starts, len(flat)]))
            bands.append(position.astype(np.int32))
            keys.append(flat)
            nodes.append(node[parent])
    band = np.concatenate(bands) if bands else np.zeros(0, np.int32)
    key = np.concatenate(keys).astype(np.int64) if keys else np.zeros(0, np.int64)
    node = np.concatenate(nodes).astype(np.int64) if nodes else np.zeros(0, np.int64)
    bucket = bucket_of(key)
    order = np.lexsort((key, band, bucket))
    return pa.table([bucket[order], band[order], key[order], node[order]], schema=KEY_SCHEMA)


def bucket_of(keys: np.ndarray) -> np.ndarray:
    """Keys are hashes already; the multiply spreads any bias of their low bits over the top ones."""
    with np.errstate(over="ignore"):
        mixed = keys.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(64 - BUCKET_BITS)).astype(np.int32)


def write_grouped(sink: storage.ParquetSink, table: pa.Table, group: str | None, max_rows: int) -> str | None:
    """`table` (sorted by `group`) into `sink` (of `table`'s schema) as one Parquet file whose row
    groups never mix two values of `group` and hold `max_rows` rows at most, so readers prune them by
    their statistics; the file's name (`sink.written`). No rows, no file (None)."""
    try:
        if group is None:
            starts = [0]
        else:
            values = table.column(group).to_numpy()
            starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]).tolist() if len(values) else []
        for start, end in zip(starts, starts[1:] + [table.num_rows]):
            for at in range(start, end, max_rows):
                sink.write(table.slice(at, min(max_rows, end - at)))
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.written


def keys_of(docs: str) -> str:
    """The key file of a docs file: <...>/docs/part-N.parquet -> <...>/keys/part-N.parquet."""
    return "/keys/".join(docs.rsplit("/docs/", 1))


def write_run_part(run_dir: str, name: str, docs: pa.Table) -> None:
    """One part of a run into the index: its `INDEX_SCHEMA` rows by node and its keys by bucket."""
    docs = docs.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    docs = docs.take(pc.sort_indices(docs.column("node")))
    keys = key_table(docs, ALL_KEYS)
    write_grouped(storage.ParquetSink(storage.join(run_dir, "keys", name), keys.schema), keys, "bucket", KEY_GROUP_ROWS)
    write_grouped(storage.ParquetSink(storage.join(run_dir, "docs", name), docs.schema), docs, None, DOC_GROUP_ROWS)


def read_row_groups(uri: str, columns: list[str], keep: Callable[[dict], bool]) -> tuple[pa.Table, int]:
    """The row groups of `uri` whose column statistics ({column: (min, max)}) `keep` accepts, only
    `columns` of them, and the compressed bytes of those column chunks (what was read)."""
    f = pq.ParquetFile(storage.open_input(uri))
    meta = f.metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]  # leaves: a list is "bands.list.element"
    wanted = [i for i, name in enumerate(names) if name.split(".")[0] in columns]
    groups, read = [], 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        stats = {}
        for i, name in enumerate(names):
            s = rg.column(i).statistics
            if s is not None and s.has_min_max:
                stats[name] = (s.min, s.max)
        if rg.num_rows and keep(stats):
            groups.append(g)
            read += sum(rg.column(i).total_compressed_size for i in wanted)
    table = f.read_row_groups(groups, columns=columns) if groups else f.schema_arrow.empty_table().select(columns)
    return table, read


# -- finding a run's indexed neighbours (engine tasks and their driver)


@dataclass(frozen=True)
class NewKeysTask:
    """Engine task: a signature file -> its documents' keys (the kinds the run matches by), bucketed,
    in a `storage.scratch_sink` file of `out_dir`."""

    out_dir: str
    kinds: KeyKinds

    def __call__(self, sig_path: str) -> dict:
        sig = pq.read_table(storage.open_input(sig_path), columns=["node", "text_key", "url_key", "bands", "error"])
        keys = key_table(sig.filter(pc.is_null(sig.column("error"))), self.kinds)
        sink = storage.scratch_sink(self.out_dir, sig_path.rsplit("/", 1)[-1], KEY_SCHEMA)
        return {"path": write_grouped(sink, keys, "bucket", KEY_GROUP_ROWS), "keys": keys.num_rows}


def _in_bucket(bucket: int, sorted_keys: np.ndarray | None) -> Callable[[dict], bool]:
    """Row groups of `bucket` whose key range holds one of `sorted_keys` (any key when None)."""
    def keep(stats: dict) -> bool:
        lo, hi = stats.get("bucket", (bucket, bucket))
        if not lo <= bucket <= hi:
            return False
        if sorted_keys is None or "key" not in stats:
            return True
        kmin, kmax = stats["key"]
        at = int(np.searchsorted(sorted_keys, kmin))
        return at < len(sorted_keys) and sorted_keys[at] <= kmax
    return keep


@dataclass(frozen=True)
class ProbeTask:
    """Engine task: one bucket -> the indexed nodes sharing a (band, key) of that bucket with a new
    document, as `MATCH_SCHEMA` rows in a `storage.scratch_sink` file of <out_dir> named bucket-BB.parquet (row
    groups by indexed part)."""

    new_key_files: list[str]
    indexed: list[IndexPart]
    out_dir: str
    kinds: KeyKinds  # the keys the run clusters by (the new keys may hold more: `find_neighbours`)

    def __call__(self, bucket: int) -> dict:
        new = pa.concat_tables([read_row_groups(f, ["band", "key"], _in_bucket(bucket, None))[0]
                                for f in self.new_key_files])
        result = {"bucket": bucket, "index_bytes_read": 0, "files": [], "path": None}
        if new.num_rows == 0:
            return result
        new = new.group_by(["band", "key"]).aggregate([])
        sorted_keys = np.sort(new.column("key").to_numpy())
        matches = []
        for i, part in enumerate(self.indexed):
            old, read = read_row_groups(part.keys, ["band", "key", "node"], _in_bucket(bucket, sorted_keys))
            result["index_bytes_read"] += read
            hit = old.join(new, ["band", "key"], join_type="left semi")
            if hit.num_rows:
                band = hit.column("band").to_numpy()
                in_graph = (((band == TEXT_BAND) & self.kinds.text) | ((band == URL_BAND) & self.kinds.url)
                            | ((band >= 0) & self.kinds.bands))
                nodes = pa.table({"node": hit.column("node"), "in_graph": in_graph}).group_by("node").aggregate(
                    [("in_graph", "any")]).sort_by("node")
                matches.append(pa.table([np.full(nodes.num_rows, i, np.int32), nodes.column("node"),
                                         nodes.column("in_graph_any")], schema=MATCH_SCHEMA))
                result["files"].append(i)
        if matches:
            sink = storage.scratch_sink(self.out_dir, f"bucket-{bucket:02d}.parquet", MATCH_SCHEMA)
            result["path"] = write_grouped(sink, pa.concat_tables(matches), "file", KEY_GROUP_ROWS)
        return result


@dataclass(frozen=True)
class FetchTask:
    """Engine task: one indexed part with a match -> the `NEIGHBOUR_SCHEMA` rows of its matched nodes
    (from `match_files`: `ProbeTask`'s), reading only the row groups that hold them, to a
    `storage.scratch_sink` file of <out_dir> named part-NNNNN.parquet."""

    match_files: list[str]
    indexed: list[IndexPart]
    out_dir: str

    def __call__(self, file: int) -> dict:
        def this_file(stats: dict) -> bool:
            lo, hi = stats.get("file", (file, file))
            return lo <= file <= hi

        matched = [read_row_groups(f, ["file", "node", "in_graph"], this_file)[0] for f in self.match_files]
        table = pa.concat_tables(matched)
        table = table.filter(pc.equal(table.column("file"), file)).group_by("node").aggregate(
            [("in_graph", "any")]).sort_by("node")  # a node matched in several buckets
        nodes = table.column("node").to_numpy()

        def holds_a_node(stats: dict) -> bool:
            if "node" not in stats:
                return True
            lo, hi = stats["node"]
            at = int(np.searchsorted(nodes, lo))
            return at < len(nodes) and nodes[at] <= hi

        rows, read = read_row_groups(self.indexed[file].docs, INDEX_SCHEMA.names, holds_a_node)
        rows = rows.filter(pc.is_in(rows.column("node"), value_set=pa.array(nodes, pa.int64())))
        in_graph = table.column("in_graph_any").take(pc.index_in(rows.column("node"), value_set=table.column("node")))
        if self.indexed[file].index:
            shifted = pc.subtract(rows.column("node"), pa.scalar(self.indexed[file].index << INDEX_SHIFT, pa.int64()))
            rows = rows.set_column(rows.schema.get_field_index("node"), "node", shifted)
        rows = rows.cast(INDEX_SCHEMA)
        rows = rows.set_column(rows.schema.get_field_index("shingles"), "shingles",
                               shingle_bytes(rows.column("shingles").combine_chunks()))
        rows = rows.append_column("file", pa.array(np.full(rows.num_rows, file, np.int32)))
        rows = rows.append_column("in_graph", in_graph)
        sink = storage.scratch_sink(self.out_dir, storage.part_name(file), NEIGHBOUR_SCHEMA)
        sink.write(rows)
        sink.close()
        return {"file": file, "path": sink.written, "rows": rows.num_rows, "in_graph": pc.sum(rows.column("in_graph")).as_py() or 0,
                "index_bytes_read": read}


def find_neighbours(engine, indexed: list[IndexPart], sig_files: list[str], work: str, kinds: KeyKinds,
                    replacing: bool) -> tuple[list[str], dict]:
    """The indexed documents that share a key of `kinds` with a new document (in `sig_files`, the
    signature pass's), as Parquet files of `NEIGHBOUR_SCHEMA` rows; and counts: those documents found, index
    bytes read. `replacing`: also those sharing a text or URL key (not in the graph), so that every
    indexed row a new document replaces (same id and URL, else text) is among them to be retired."""
    new_dir, match_dir, out_dir = (storage.join(work, name) for name in ("keys", "matches", "neighbours"))
    for folder in (new_dir, match_dir, out_dir):
        storage.rmtree(folder)  # an interrupted attempt's files
    probed_kinds = KeyKinds(kinds.text or replacing, kinds.url or replacing, kinds.bands)
    new_files = [r["path"] for r in engine.map_units("dedup index keys", NewKeysTask(new_dir, probed_kinds), sig_files)
                 if r["keys"]]
    if not new_files:
        return [], {"existing_matches": 0, "index_bytes_read": 0}
    probed = engine.map_units("dedup index probe", ProbeTask(new_files, indexed, match_dir, kinds),
                              list(range(1 << BUCKET_BITS)))
    files = sorted({i for r in probed for i in r["files"]})
    match_files = [r["path"] for r in probed if r["path"]]
    fetched = engine.map_units("dedup index fetch", FetchTask(match_files, indexed, out_dir), files)
    return ([r["path"] for r in fetched if r["rows"]],
            {"existing_matches": sum(r["in_graph"] for r in fetched),
             "index_bytes_read": sum(r["index_bytes_read"] for r in probed + fetched)})


def replaced_dir(root: str, file: int) -> str:
    """Where the engine writes the rows of indexed part `file` that a re-run replaces."""
    return storage.join(root, f"file={file}")


@dataclass(frozen=True)
class Retiring:
    """What a re-run retires: the rows of the indexed parts `files` (by number; its own index's) that
    a new document replaces, which the engine writes under `root` (`replaced_dir`, named in its
    listing: `storage.write_listing`) for `RetireTask`."""

    root: str
    files: frozenset[int]

    def retired_files(self) -> list[int]:
        """The parts the engine wrote replaced rows of, in order."""
        folders = storage.listed_files(self.root)
        return sorted(int(folder.rsplit("/", 1)[-1].removeprefix("file=")) for folder in folders)


@dataclass(frozen=True)
class RetireTask:
    """Engine task: one indexed part holding rows the re-run `run` replaced -> the part without them,
    under <index>/runs/<its run>/rev-<generation>/<run>/ (nothing when none is left); unreferenced
    until committed."""

    replaced_root: str
    indexed: list[IndexPart]
    index_path: str
    generation: int
    run: str

    def __call__(self, file: int) -> dict:
        part = self.indexed[file]
        replaced = pa.concat_tables([pq.read_table(storage.open_input(f), columns=["node"]) for f in
                                     storage.listed_files(self.replaced_root)[replaced_dir(self.replaced_root, file)]]
                                    ).column("node")
        # the engine saw nodes moved down by the index's number (FetchTask); the part stores them unmoved
        replaced = pc.add(replaced, pa.scalar(part.index << INDEX_SHIFT, pa.int64()))
        rows = pq.read_table(storage.open_input(part.docs))
        left = rows.filter(pc.invert(pc.is_in(rows.column("node"), value_set=pc.unique(replaced))))
        stored = None
        if left.num_rows:
            folder = f"runs/{part.run}/rev-{self.generation:06d}/{self.run}"
            name = part.docs.rsplit("/", 1)[-1]
            write_run_part(storage.join(self.index_path, folder), name, left)
            stored = f"{folder}/docs/{name}"
        return {"file": file, "retired": rows.num_rows - left.num_rows, "stored": stored}


@dataclass
class DedupIndex:
    path: str

    @property
    def manifest_dir(self) -> str:
        return storage.join(self.path, "_manifest")

    def run_dir(self, run: str) -> str:
        return storage.join(self.path, "runs", run)

    def generation(self) -> dict:
        """The latest manifest; an empty index (generation 0) when there is none."""
        gens = sorted(n for n in storage.listdir(self.manifest_dir) if n.startswith("gen-") and n.endswith(".json"))
        if not gens:
            return {"format": FORMAT, "version": VERSION, "generation": 0, "settings": None, "runs": []}
        path = storage.join(self.manifest_dir, gens[-1])
        manifest = json.loads(storage.read_text(path))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ConfigError(f"{path}: not a {FORMAT} manifest of version {VERSION} (an index of version "
                              f"{manifest.get('version')} is read by an older glmdata; build a new index)")
        return manifest

    def parts(self, manifest: dict, skip_run: str | None = None, index: int = 0) -> list[IndexPart]:
        """The parts of every run the manifest covers (but `skip_run`), as the run's `index`-th index."""
        out = []
        for r in manifest["runs"]:
            if r["run"] == skip_run:
                continue
            if "parts" in r:  # some of its rows were retired: the parts left
                stored = r["parts"]
            else:
                docs = storage.join(self.run_dir(r["run"]), "docs")
                stored = [f"runs/{r['run']}/docs/{f.rsplit('/', 1)[-1]}"
                          for f in sorted(storage.expand(docs)) if f.endswith(".parquet")]
            out += [IndexPart(storage.join(self.path, keys_of(path)), storage.join(self.path, path), index, r["run"],
                              path) for path in stored]
        return out

    def revised(self, manifest: dict, indexed: list[IndexPart], own: int, retired: list[dict]) -> dict[str, dict]:
        """The manifest entries that `RetireTask` results (by number in `indexed`, where this index is
        the `own`-th) change: each run they took rows from, with its rows retired so far and its parts left."""
        by_file = {r["file"]: r for r in retired}
        entries = {}
        for entry in manifest["runs"]:
            files = [f for f, part in enumerate(indexed) if part.index == own and part.run == entry["run"]]
            if any(f in by_file for f in files):
                left = [by_file[f]["stored"] if f in by_file else indexed[f].stored for f in files]
                entries[entry["run"]] = {"parts": [path for path in left if path],
                                         "retired": entry.get("retired", 0) + sum(by_file[f]["retired"]
                                                                                  for f in files if f in by_file)}
        return entries

    def check_settings(self, manifest: dict, settings: dict, where: str) -> None:
        """Signatures are comparable only under the same MinHash settings: name the first that differs."""
        if manifest["settings"] is None:
            return
        for key, value in settings.items():
            if manifest["settings"].get(key) != value:
                raise ConfigError(f"{where}: dedup.{key} is {value!r} but the index at {self.path} was built with "
                                  f"{manifest['settings'].get(key)!r}; use the index's setting or a new index")

    def manifest_path(self, generation: int) -> str:
        return storage.join(self.manifest_dir, f"gen-{generation:06d}.json")

    def commit(self, manifest: dict, settings: dict, run: dict, revised: dict[str, dict]) -> dict:
        """Generation N+1 = `manifest` (generation N, read under the lease) with the entries of the runs
        it retired rows from replaced by `revised`'s, + `run`, renamed into place; then what only
        earlier generations used goes (`delete_unused`)."""
        gen = manifest["generation"] + 1
        new = {"format": FORMAT, "version": VERSION, "generation": gen, "settings": settings,
               "runs": [{**r, **revised.get(r["run"], {})} for r in manifest["runs"]] + [run]}
        target = self.manifest_path(gen)
        if storage.exists(target):
            raise IndexBusy(f"{target} appeared while this run held the lease: another run appended without it")
        storage.write_text(target, json.dumps(new, indent=2, sort_keys=True))
        if manifest["generation"]:
            try:
                self.delete_unused(manifest, new)
            except OSError as e:  # committed all the same: the next commit deletes what is left
                log.warning("dedup index %s: clean-up after generation %d stopped: %s", self.path, gen, e)
        return new

    def delete_unused(self, previous: dict, current: dict) -> None:
        """With generation N+1 (`current`) committed: the manifests before N (`previous`), and under runs/
        the files neither lists that were written before N was committed (module docstring, Clean-up).
        A folder with nothing left goes whole (one request on an object store)."""
        fs, root = storage.filesystem(self.path)
        committed = fs.get_file_info(storage.filesystem(self.manifest_path(previous["generation"]))[1]).mtime
        listed, whole = set(), set()  # files a generation lists; folders it lists every file of
        for manifest in (previous, current):
            for r in manifest["runs"]:
                if "parts" in r:
                    listed.update(posixpath.join(root, f) for path in r["parts"] for f in (path, keys_of(path)))
                else:
                    whole.update(posixpath.join(root, "runs", r["run"], folder) for folder in ("docs", "keys"))
        entries = defaultdict(list)
        runs = posixpath.join(root, "runs")
        for info in fs.get_file_info(pafs.FileSelector(runs, recursive=True, allow_not_found=True)):
            entries[posixpath.dirname(info.path)].append(info)

        def unused(folder: str) -> tuple[list[pafs.FileInfo], bool]:
            """What goes below `folder` (folders whole where all below them goes) and whether that is all."""
            gone, everything = [], True
            for info in entries[folder]:
                # a folder named by the object names alone has no mtime: it goes when all below it does
                old = info.mtime is None or info.mtime < committed
                if info.type == pafs.FileType.Directory and info.path not in whole:
                    below, all_below = unused(info.path)
                    gone += [info] if all_below and old else below
                    everything &= all_below and old
                elif info.type == pafs.FileType.File and info.path not in listed and old:
                    gone.append(info)
                else:
                    everything = False
            return gone, everything

        for info in unused(runs)[0]:
            (fs.delete_dir if info.type == pafs.FileType.Directory else fs.delete_file)(info.path)
        for name in storage.listdir(self.manifest_dir):
            if name.startswith("gen-") and name.endswith(".json") and int(name[4:-5]) < previous["generation"]:
                storage.rmtree(storage.join(self.manifest_dir, name))

    # -- the lease
    @contextlib.contextmanager
    def lease(self):
        """Hold the index's lease for the block; refuse (IndexBusy) while another live run holds it.
        The runner's workdir lease does the work (exclusive create, heartbeat, stale takeover)."""
        held = WorkdirLease(self.path)
        try:
            held.acquire()
        except WorkdirBusy as e:
            raise IndexBusy(f"the dedup index {self.path} is held by another run appending to it ({e})") from None
        try:
            yield held
        finally:
            held.release()
