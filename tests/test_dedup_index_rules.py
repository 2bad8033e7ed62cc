"""Rules of the persistent dedup index and of the engines' use of it, checked on hand-made files and
empty frames (no stage run, no clustering)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.dedup.index import INDEX_SCHEMA, NEIGHBOUR_SCHEMA, REPLACED_SCHEMA, IndexPart, RetireTask, Retiring, \
    keys_of, replaced_dir, write_run_part


def _indexed_part(index: str, nodes: list[int]) -> IndexPart:
    rows = [{"node": n, "id": f"d{n}", "run": "r0", "survivor": f"d{n}", "survivor_run": "r0", "text_key": n,
             "url_key": None, "n_shingles": 1, "bands": [n], "shingles": [n]} for n in nodes]
    write_run_part(storage.join(index, "runs", "r0"), "part-00000.parquet", pa.Table.from_pylist(rows, INDEX_SCHEMA))
    stored = "runs/r0/docs/part-00000.parquet"
    return IndexPart(storage.join(index, keys_of(stored)), storage.join(index, stored), 0, "r0", stored)


def _retire(tmp_path, index: str, part: IndexPart, run: str, replaced_node: int) -> dict:
    """`run`'s RetireTask for generation 2 of the one indexed part, which it replaced `replaced_node` of."""
    root = str(tmp_path / f"replaced-{run}")
    storage.makedirs(replaced_dir(root, 0))
    replaced = storage.join(replaced_dir(root, 0), "part-0.parquet")
    pq.write_table(pa.Table.from_pylist([{"file": 0, "node": replaced_node}], REPLACED_SCHEMA), replaced)
    storage.write_listing(root, [replaced])
    return RetireTask(root, [part], index, 2, run)(0)


def test_two_runs_that_read_one_generation_retire_into_files_of_their_own(tmp_path):
    """A run that took another's lease over unseen read the same generation: the loser, retiring after
    the winner committed, must not write over the file the winner's generation lists."""
    index = str(tmp_path / "index")
    part = _indexed_part(index, [1, 2, 3])
    winner = _retire(tmp_path, index, part, "00001-winner", replaced_node=1)
    loser = _retire(tmp_path, index, part, "00001-loser", replaced_node=2)
    assert winner["stored"] != loser["stored"]
    listed = storage.join(index, winner["stored"])
    assert pq.read_table(listed, columns=["node"]).column("node").to_pylist() == [2, 3]
    assert sorted(pq.read_table(keys_of(listed), columns=["node"]).column("node").to_pylist()) == [2, 2, 3, 3]


@pytest.mark.parametrize("retires", [False, True])
def test_spark_keeps_the_marked_neighbours_only_for_a_second_reader(tmp_path, spark_session_engine, monkeypatch,
                                                                    retires):
    """The neighbours `with_replaced` marks feed the graph (persisted: the clustering reads it twice) and,
    when the run retires, the replaced rows' write: persisted for that second reader only, else Spark
    would keep a second copy of every matched indexed row, shingle sets included, for nothing."""
    from pipeline.dedup import spark_dedup
    from pipeline.dedup.passes import SIGNATURE_SCHEMA

    sig_dir, neighbours_file = tmp_path / "signatures", str(tmp_path / "neighbours.parquet")
    sig_dir.mkdir()
    pq.write_table(SIGNATURE_SCHEMA.empty_table(), sig_dir / "part-00000.parquet")
    pq.write_table(NEIGHBOUR_SCHEMA.empty_table(), neighbours_file)
    marked, cached = [], {}
    real_with_replaced = spark_dedup.with_replaced

    def marking(*args):
        marked.append(real_with_replaced(*args))
        return marked[-1]

    def clustering(graph, *args):  # not under test: what is cached while it runs is
        cached.update(graph=graph.is_cached, neighbours=marked[0].is_cached)
        return {}

    monkeypatch.setattr(spark_dedup, "with_replaced", marking)
    monkeypatch.setattr(spark_dedup, "_assign", clustering)
    monkeypatch.setattr(spark_dedup, "write_groups", lambda *args: None)  # no Spark job: what is cached is planned
    retiring = Retiring(str(tmp_path / "replaced"), frozenset({0})) if retires else None
    spark_dedup.assignments(spark_session_engine.spark, [str(sig_dir / "part-00000.parquet")], str(tmp_path / "assign"),
                            str(tmp_path / "checkpoints"), None, 0.8, [], 1, [neighbours_file], retiring)
    assert cached == {"graph": True, "neighbours": retires}
    assert not marked[0].is_cached, "unpersisted after the clustering"
