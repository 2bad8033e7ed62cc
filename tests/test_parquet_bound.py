"""Parquet batches stay bounded where the footer undercounts what rows decode to: dictionary values of
every byte array type, and lists whose long runs of one large value sit in a few rows."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import parquet_source, read_file
from pipeline.ingest.jsonl import FieldMap

BATCH_BYTES = 64 << 10
VALUE = "x" * (16 << 10)


@pytest.fixture
def batches(monkeypatch) -> list[pa.RecordBatch]:
    """Each batch the reader reads (ParquetFile.iter_batches), BATCH_BYTES and RUN_BYTES made small."""
    monkeypatch.setattr(parquet_source, "BATCH_BYTES", BATCH_BYTES)
    monkeypatch.setattr(parquet_source, "RUN_BYTES", BATCH_BYTES)
    read = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda self, **kw: (
        read.append(batch) or batch for batch in iter_batches(self, **kw)))
    return read


def documents(path, fields: FieldMap = FieldMap()) -> list:
    return list(read_file(str(path), "auto", fields, 1 << 20))


@pytest.mark.parametrize("values", [
    pa.array([VALUE] * 20, pa.json_()),  # logical type JSON (read as an extension type)
    pa.array([VALUE.encode()] * 20, pa.binary(len(VALUE))),  # fixed-length bytes
    pa.array([VALUE.encode()] * 20, pa.binary()),  # bytes without a logical type
    pa.array([VALUE] * 20, pa.large_string()),
    pa.array([VALUE] * 20).dictionary_encode(),  # an Arrow dictionary type, kept in the file's ARROW:schema
], ids=lambda values: str(values.type))
@pytest.mark.parametrize("group_rows", [20, 5])
def test_dictionary_values_of_every_byte_array_type_are_counted_for_each_row(tmp_path, batches, values, group_rows):
    """A JSON or enum value of 8 MiB in 100 rows peaked at 2.7 GB RSS, a fixed_size_binary one at 1.7 GB: only
    strings and unannotated bytes were counted (a string: 0.23 GB)."""
    path = tmp_path / "repeated.parquet"
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(20)], "title": values}), path, row_group_size=group_rows)
    assert pq.ParquetFile(path).metadata.row_group(0).total_byte_size < 2 * len(VALUE)
    assert [d.title for d in documents(path)] == [VALUE] * 20
    assert max(batch.num_rows for batch in batches if "title" in batch.schema.names) <= 4


def list_bytes(batches: list[pa.RecordBatch]) -> list[int]:
    """The bytes of the `tags` values of each batch read decoded (not those read as dictionaries to count them)."""
    return [pc.sum(pc.binary_length(b.column("tags").flatten())).as_py() or 0
            for b in batches if b.schema.field("tags").type.value_type == pa.string()]


def test_a_few_rows_of_long_lists_of_one_large_value_are_not_counted_at_the_average_list(tmp_path, batches):
    """16 rows of 16 values of 1 MiB among 1,008 empty lists came in one batch of 25 rows, by the values per row
    on average: 0.87 GB at the peak, now 0.2 GB."""
    path = tmp_path / "lists.parquet"
    tags = [[VALUE, VALUE] if i < 8 else [] for i in range(64)]  # 32 KiB in each of the first 8 rows
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(64)], "tags": tags}), path)
    assert len(documents(path, FieldMap(title="tags"))) == 64
    assert sum(list_bytes(batches)) == 8 * 2 * len(VALUE)
    assert max(list_bytes(batches)) <= BATCH_BYTES


def test_lists_of_small_values_spread_over_the_rows_keep_the_batches_of_the_average_row(tmp_path, batches):
    """Counting each row's bytes in the lists (not every value of the row group in one row) keeps
    ordinary tag lists from making batches smaller."""
    path = tmp_path / "tags.parquet"
    tags = [[f"tag {(i + k) % 40}" for k in range(6)] for i in range(2048)]  # 12,288 values: over a batch in all
    pq.write_table(pa.table({"text": [f"text number {i}" for i in range(2048)], "tags": tags}), path)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    assert len(documents(path, FieldMap(title="tags"))) == 2048
    assert any(b.schema.names == ["tags"] for b in batches)  # the lists' values were counted row by row
    assert [b.num_rows for b in batches if "text" in b.schema.names and b.num_rows > 1] == [1024, 1024]
    assert meta.total_byte_size / meta.num_rows < BATCH_BYTES / 1024
