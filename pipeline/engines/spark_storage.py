"""Spark DataFrames to and from Parquet through pipeline.storage (pyarrow's filesystems).

Spark's own readers, writers and checkpoints (spark.read.parquet, df.write, setCheckpointDir) go
through Hadoop's FileSystem, which needs a connector per scheme: s3:// has one on EMR only (EMRFS),
not on Dataproc, standalone, local mode or an S3-compatible store reached with AWS_ENDPOINT_URL.
Documents already go through pyarrow's filesystems (local, gs://, s3://, hdfs://); these helpers
give the shuffled intermediates (dedup's signatures, graph rounds, assignments) the same reach.

Files are written per task with `pipeline.storage.scratch_sink`: on local disks and HDFS renamed
into place under a name fixed by the partition, so a retried or speculative task replaces the file with
the same rows, and a killed one leaves none; on an object store (where a rename is a copy) written once
under a name of the task's attempt. Either way the writers return the names the successful attempts
reported (what `collect()` gets: one result per partition), and the readers take those, never the
folder: a failed attempt's file there (closing its writer completes the upload) is never read.
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from pipeline import storage

# Rows go through Python (the RDD API): mapInArrow would keep them columnar but needs pandas on
# the driver, which no executor environment carries.
BATCH_ROWS = 65536


def _batches(rows: Iterable[tuple], schema: pa.Schema) -> Iterator[pa.Table]:
    rows = iter(rows)
    while chunk := list(islice(rows, BATCH_ROWS)):
        columns = list(zip(*chunk))
        yield pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema)], schema=schema)


def write_partitions(df: DataFrame, folder: str) -> tuple[int, list[str]]:
    """Each non-empty partition of `df` as a file of `folder` (`storage.scratch_sink`: part-NNNNN.parquet);
    returns the row count and the files, in partition order."""
    storage.rmtree(folder)  # rows of an earlier, interrupted attempt at this step
    schema = to_arrow_schema(df.schema)

    def write(index: int, rows: Iterator[tuple]) -> Iterator[tuple[int, str | None]]:
        sink = storage.scratch_sink(folder, storage.part_name(index), schema)
        try:
            for table in _batches(rows, schema):
                sink.write(table)
        except BaseException:
            sink.abort()
            raise
        sink.close()
        yield sink.rows, sink.written

    written = df.rdd.mapPartitionsWithIndex(write).collect()
    return sum(rows for rows, _ in written), [path for _, path in written if path]


def write_groups(df: DataFrame, key: str, root: str, folder_of: Callable[[int], str]) -> list[str]:
    """The rows of each `key` value k as one file in `folder_of(k)`, a folder under `root` (the layout
    of Spark's partitionBy; the key column stays in the rows); `df` must hold each key in one partition,
    sorted by key (repartition(key).sortWithinPartitions(key, ...)). The files are named in `root`'s
    listing (`storage.write_listing`), which is how readers find them; returned too."""
    at = df.columns.index(key)
    schema = to_arrow_schema(df.schema)

    def write(index: int, rows: Iterator[tuple]) -> Iterator[list[str]]:
        sink, current, written = None, None, []
        try:
            for row in rows:
                if row[at] != current:
                    if sink is not None:
                        written.append(_flush(sink, pending))
                    current, pending = row[at], []
                    sink = storage.scratch_sink(folder_of(current), storage.part_name(index), schema)
                pending.append(row)
                if len(pending) == BATCH_ROWS:
                    sink.write(next(_batches(pending, schema)))
                    pending = []
            if sink is not None:
                written.append(_flush(sink, pending))
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        yield written

    files = [path for written in df.rdd.mapPartitionsWithIndex(write).collect() for path in written]
    storage.write_listing(root, files)
    return files


def _flush(sink: storage.ParquetSink, pending: list[tuple]) -> str:
    for table in _batches(pending, sink.schema):
        sink.write(table)
    sink.close()
    return sink.written


def read_parquet(spark: SparkSession, source: str | list[str], schema: StructType | None = None,
                 columns: list[str] | None = None) -> DataFrame:
    """Parquet files (a folder, a glob or a list of files) as a DataFrame, one task per file. The
    schema is the first file's (only `columns` of it, when given) unless given; with no file, an
    empty DataFrame of `schema`."""
    paths = storage.expand(source) if isinstance(source, str) else list(source)
    paths = [p for p in paths if p.endswith(".parquet")]
    if schema is None:
        if not paths:
            raise FileNotFoundError(f"{source}: no Parquet file to read")
        arrow_schema = pq.read_schema(storage.open_input(paths[0]))
        if columns is not None:
            arrow_schema = pa.schema([arrow_schema.field(c) for c in columns])
        schema = from_arrow_schema(arrow_schema)
    if not paths:
        return spark.createDataFrame([], schema)
    columns = schema.names

    def read(path: str) -> Iterator[tuple]:
        for batch in pq.ParquetFile(storage.open_input(path)).iter_batches(columns=columns):
            yield from zip(*(c.to_pylist() for c in batch.columns))

    return spark.createDataFrame(spark.sparkContext.parallelize(paths, len(paths)).flatMap(read), schema,
                                 verifySchema=False)
