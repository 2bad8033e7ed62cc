"""pipeline.storage: its Parquet writer (what it writes beside the data, and that the data reads back as
written), its S3 filesystems, folder copies and which filesystems rename folders."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage

from test_s3 import BUCKET, s3_endpoint  # noqa: F401 (a fixture)

SCHEMA = pa.schema([("id", pa.string()), ("offset", pa.int64()), ("tokens", pa.list_(pa.int32())),
                    ("shares", pa.map_(pa.string(), pa.float32()))])


def test_parquet_sink_keeps_statistics_of_flat_columns_only(tmp_path):
    """Min/max of flat columns (readers prune row groups by them: dedup's index) in every row group; none for a
    list's or a map's leaves (encode's tokens: no reader uses them, and they cost part of the write)."""
    batches = [pa.RecordBatch.from_pydict({"id": [f"d{k}{i}" for i in range(3)], "offset": [k * 3 + i for i in range(3)],
                                           "tokens": [[8, 31999, k], [], None],
                                           "shares": [[("en", 0.5)], [], None]}, SCHEMA) for k in range(2)]
    uri = str(tmp_path / "data" / "part-00000.parquet")
    sink = storage.ParquetSink(uri, SCHEMA)
    for batch in batches:
        sink.write(batch)
    sink.close()

    meta = pq.ParquetFile(uri).metadata
    assert meta.num_row_groups == 2
    for g in range(meta.num_row_groups):
        with_stats = {meta.row_group(g).column(i).path_in_schema: meta.row_group(g).column(i).is_stats_set
                      for i in range(meta.num_columns)}
        assert with_stats == {"id": True, "offset": True, "tokens.list.element": False,
                              "shares.key_value.key": False, "shares.key_value.value": False}
        assert meta.row_group(g).column(1).statistics.min == g * 3
    assert meta.row_group(0).column(2).compression == "ZSTD"
    assert pq.read_table(uri).equals(pa.Table.from_batches(batches))


def test_flat_columns():
    assert storage.flat_columns(SCHEMA) == ["id", "offset"]
    assert storage.flat_columns(pa.schema([("s", pa.struct([("a", pa.int32())])), ("dotted.name", pa.int8())])) == [
        "dotted.name"]


def test_parquet_sink_stops_a_dictionary_at_the_limit(tmp_path):
    """A token column of more distinct ids per row group than DICTIONARY_PAGE_LIMIT holds (a 128k-piece
    vocabulary's) falls back to plain encoding after a dictionary page of at most the limit (pyarrow's
    default limit: a 357 KB page here); few distinct values stay dictionary-encoded. Both read back as written."""
    many = np.random.default_rng(0).permutation(storage.DICTIONARY_PAGE_LIMIT // 4 * 2).astype(np.int32)
    few = np.arange(len(many), dtype=np.int32) % 1000
    for name, ids in (("many", many), ("few", few)):
        offsets = np.arange(0, len(ids) + 1, 100, dtype=np.int32)
        table = pa.table({"tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))})
        uri = str(tmp_path / f"{name}.parquet")
        sink = storage.ParquetSink(uri)
        sink.write(table)
        sink.close()
        chunk = pq.ParquetFile(uri).metadata.row_group(0).column(0)
        dictionary_page = chunk.data_page_offset - chunk.dictionary_page_offset
        assert dictionary_page <= storage.DICTIONARY_PAGE_LIMIT + 100 if name == "many" else dictionary_page < 5000
        assert pq.read_table(uri).equals(table)


def test_one_s3_filesystem_per_process_and_settings(monkeypatch):
    """Making an S3 filesystem takes ~80 ms: every s3:// call made one. Now one is kept per process,
    endpoint, region and credentials, and a change of any of them gets its own."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    fs, path = storage.filesystem("s3://bucket/a/b.parquet")
    assert path == "bucket/a/b.parquet" and storage.filesystem("s3://other/c")[0] is fs
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second")
    rotated = storage.filesystem("s3://bucket/a")[0]
    assert rotated is not fs
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")
    assert storage.filesystem("s3://bucket/a")[0] not in (fs, rotated)


def test_a_stage_is_committed_by_renaming_its_folder_only_where_folders_rename():
    """HDFS renames a folder in one step, as a local disk does; object stores would copy every file
    (the runner copies them itself there, _SUCCESS last)."""
    assert all(map(storage.renames_folders, ("/work/out", "file:///work/out", "hdfs://namenode/work/out")))
    assert not any(storage.renames_folders(f"{scheme}://bucket/work/out") for scheme in ("s3", "s3a", "gs", "abfs"))


def test_tree_lists_every_file_and_folder_and_copy_files_copies_them(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "data" / "empty").mkdir(parents=True)
    (src / "data" / "part-0.parquet").write_bytes(b"rows")
    (src / "_SUCCESS").write_text("{}")
    folders, files = storage.tree(str(src))
    assert (folders, files) == (["data", "data/empty"], [("_SUCCESS", 2), ("data/part-0.parquet", 4)])
    same_names = [(name, name, size) for name, size in files]
    (dst / "data" / "part-0.parquet" / "in-the-way").mkdir(parents=True)  # that file's copy fails
    with pytest.raises(OSError):
        storage.copy_files(str(src), str(dst), same_names)
    shutil.rmtree(dst / "data" / "part-0.parquet")
    storage.copy_files(str(src), str(dst), same_names + [("data/part-0.parquet", "data/renamed.parquet", 4)])
    assert storage.tree(str(dst))[1] == [*files, ("data/renamed.parquet", 4)]
    assert (dst / "data" / "part-0.parquet").read_bytes() == (dst / "data" / "renamed.parquet").read_bytes() == b"rows"


def test_a_file_over_s3s_single_copy_limit_is_streamed_not_copied(s3_endpoint, monkeypatch):
    """S3 copies at most 5 GiB in one request, the only copy pyarrow sends: a rename or a commit of a
    larger part failed. Such a file now streams through the process; smaller ones are still copied by
    the store. (The limit is lowered so the test's files stand for both sizes.)"""
    monkeypatch.setattr(storage, "S3_COPY_LIMIT", 1000)
    monkeypatch.setattr(storage, "STREAM_COPY_BYTES", 300)  # several pieces per file
    streamed = []
    real_copyfileobj = shutil.copyfileobj
    monkeypatch.setattr(storage.shutil, "copyfileobj",
                        lambda reader, writer, size: streamed.append(size) or real_copyfileobj(reader, writer, size))
    big, small = bytes(range(256)) * 8, b"small"
    root = f"s3://{BUCKET}/copy-limit"
    storage.write_bytes(f"{root}/src/big.parquet", big)  # written under a temporary name and renamed
    storage.write_bytes(f"{root}/src/_SUCCESS", small)
    assert streamed == [300] and storage.read_bytes(f"{root}/src/big.parquet") == big
    storage.copy_files(f"{root}/src", f"{root}/dst", [(name, name, size) for name, size in storage.tree(f"{root}/src")[1]])
    assert streamed == [300, 300]
    assert [storage.read_bytes(f"{root}/dst/{name}") for name in ("big.parquet", "_SUCCESS")] == [big, small]


def test_columns_left_uncompressed_are_those_named_and_every_other_leaf_keeps_zstd(tmp_path):
    """A per-column compression mapping must name Parquet's leaves ("l.list.element"): a nested column
    it missed was written uncompressed."""
    schema = pa.schema([("a", pa.int64()), ("tokens", pa.list_(pa.int32())), ("l", pa.list_(pa.int32())),
                        ("s", pa.struct([("x", pa.int8())])), ("m", pa.map_(pa.string(), pa.float32()))])
    rows = pa.Table.from_pylist([{"a": 1, "tokens": [1, 2], "l": [3], "s": {"x": 1}, "m": [("k", 0.5)]}], schema)
    for uncompressed in ((), ("tokens",)):
        sink = storage.ParquetSink(str(tmp_path / f"{len(uncompressed)}.parquet"), schema, uncompressed=uncompressed)
        sink.write(rows)
        sink.close()
        chunks = pq.read_metadata(sink.written).row_group(0)
        got = {chunks.column(i).path_in_schema: chunks.column(i).compression for i in range(chunks.num_columns)}
        assert got == {path: "UNCOMPRESSED" if path.startswith(uncompressed or "-") else "ZSTD" for path in
                       ("a", "tokens.list.element", "l.list.element", "s.x", "m.key_value.key", "m.key_value.value")}
