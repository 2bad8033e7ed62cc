"""Dedup's engine-written scratch (Spark: spark_storage's checkpoints, assignments, paragraph removals,
replaced rows; Beam: its per-part files) on an object store, where a rename is a copy: written once
under names of their task attempts (`pipeline.storage.scratch_sink`) and read by the names the
successful attempts returned (checkpoints) or that the folder's listing holds (`storage.write_listing`),
so a failed attempt's file (its writer's close completes the upload) is never read. Local disks keep
renaming into place. Spark's collect() is played in this process (`_Attempts`): no Spark job, and the
writers' task functions run as Spark would run them, a failing attempt first."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from pyspark.sql.types import IntegerType, LongType, StructField, StructType

from pipeline import storage
from pipeline.dedup import beam_dedup
from pipeline.dedup.index import REPLACED_SCHEMA
from pipeline.dedup.passes import REMOVAL_SCHEMA, assignment_dir, read_part
from pipeline.engines import spark_storage

from test_dedup_s3_copies import store_copies  # noqa: F401  (copies counted on the moto server)
from test_s3 import BUCKET, s3_endpoint  # noqa: F401  (the moto server fixture)

SCHEMA = StructType([StructField("part", IntegerType()), StructField("row", LongType())])
# two Spark partitions, each holding its parts whole and sorted (what write_groups asks for)
PARTITIONS = [[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)], [(2, 0), (2, 1), (2, 2)]]


class _Attempts:
    """Enough of a DataFrame for spark_storage's writers: df.rdd.mapPartitionsWithIndex(f).collect()
    runs each partition's task here, partition 0 first in an attempt that fails after 3 rows (having
    written 2: `BATCH_ROWS`) and whose clean-up fails too, then in the attempt whose results collect()
    returns, as Spark does."""

    def __init__(self, broken_cleanup: list[bool]):
        self.schema, self.columns, self.rdd = SCHEMA, SCHEMA.names, self
        self.broken_cleanup = broken_cleanup

    def mapPartitionsWithIndex(self, task):  # noqa: N802  (Spark's name)
        self.task = task
        return self

    def _failing(self, rows: list[tuple]):
        yield from rows[:3]
        self.broken_cleanup[0] = True
        raise ConnectionError("the executor lost its input")

    def collect(self) -> list:
        with pytest.raises(ConnectionError):
            list(self.task(0, self._failing(PARTITIONS[0])))
        self.broken_cleanup[0] = False
        return [result for index, rows in enumerate(PARTITIONS) for result in self.task(index, iter(rows))]


def _rows(files: list[str]) -> list[tuple]:
    return sorted(tuple(r.values()) for f in files for r in pq.read_table(storage.open_input(f)).to_pylist())


@pytest.fixture
def where(request, tmp_path, monkeypatch) -> tuple[str, list]:
    """(a base folder, the store's copies): on moto's S3 server, or local."""
    monkeypatch.setattr(spark_storage, "BATCH_ROWS", 2)
    if request.param == "s3":
        return f"s3://{BUCKET}/spark-storage-{tmp_path.name}", request.getfixturevalue("store_copies")
    return str(tmp_path / "work"), []


@pytest.mark.parametrize("where", ["s3", "local"], indirect=True)
def test_spark_writers_copy_nothing_and_their_readers_skip_a_failed_attempt(where, monkeypatch):
    """write_partitions (checkpoints) and write_groups (assignments, removals, replaced rows): on S3 no
    file is copied (before: one copy each) and none is hidden from Spark's reader; partition 0's failed
    attempt left a valid file of 2 rows that its clean-up could not delete, which neither the returned
    names nor the listing hold: every row is read once. Locally the files are renamed into place."""
    base, copies = where
    broken, rmtree = [False], storage.rmtree
    monkeypatch.setattr(storage, "rmtree", lambda uri: (_ for _ in ()).throw(OSError("the clean-up failed"))
                        if broken[0] else rmtree(uri))
    folder, root = storage.join(base, "checkpoint"), storage.join(base, "assign")
    checkpointed = spark_storage.write_partitions(_Attempts(broken), folder)
    assert copies == []
    grouped = spark_storage.write_groups(_Attempts(broken), "part", root, lambda part: assignment_dir(root, part))
    assert copies == []
    rows, files = checkpointed
    everything = sorted(row for rows in PARTITIONS for row in rows)
    assert rows == len(everything) and _rows(files) == everything
    listed = [f for fs in storage.listed_files(root).values() for f in fs]
    assert _rows(grouped) == everything and listed == sorted(grouped)
    assert [read_part(root, part).num_rows for part in range(3)] == [3, 2, 3]
    names = [f.rsplit("/", 1)[-1] for f in files + grouped]
    assert not any(name.startswith((".", "_")) for name in names)
    left = [f for f in storage.expand(folder) + storage.expand(root) if f not in files + grouped]
    if base.startswith("s3://"):  # the failed attempt's rows, complete-looking, under its own name
        assert [pq.read_metadata(storage.open_input(f)).num_rows for f in left] == [2, 2]
    else:
        assert left == [] and names == ["part-00000.parquet", "part-00001.parquet"] + ["part-00000.parquet"] * 2 + [
            "part-00001.parquet"]


@pytest.mark.parametrize("where", ["s3", "local"], indirect=True)
def test_beam_per_part_files_are_written_without_a_copy(where):
    """Beam's per-part files (replaced rows, assignments, paragraph removals) return their names for
    the step's listing; on S3 they are not copied, locally they keep the part's name."""
    base, copies = where
    replaced = beam_dedup._write_rows(lambda file: storage.join(base, f"file={file}"), "replaced.parquet",
                                      REPLACED_SCHEMA, "node")((3, [{"file": 3, "node": 9}, {"file": 3, "node": 4}]))
    assert copies == []
    removed, keys = beam_dedup._write_removals(base)((1, [{"row": 2, "key": 7, "docs": 3}]))
    assert copies == []
    assert pq.read_table(storage.open_input(replaced)).column("node").to_pylist() == [4, 9] and keys == [7]
    assert pq.read_table(storage.open_input(removed), schema=REMOVAL_SCHEMA).num_rows == 1
    if not base.startswith("s3://"):
        assert [replaced, removed] == [storage.join(base, "file=3", "replaced.parquet"),
                                       storage.join(assignment_dir(base, 1), "remove.parquet")]
