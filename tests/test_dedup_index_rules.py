"""Rules of the persistent dedup index checked on hand-made files (no engine, no stage run)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.dedup.index import INDEX_SCHEMA, REPLACED_SCHEMA, IndexPart, RetireTask, keys_of, replaced_dir, \
    write_run_part


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
    pq.write_table(pa.Table.from_pylist([{"file": 0, "node": replaced_node}], REPLACED_SCHEMA),
                   storage.join(replaced_dir(root, 0), "part-0.parquet"))
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
