"""Beam dedup's grouped steps take one pass or two over a group, never a list of it: one group may be a text
repeated in a hundred million pages or a line of boilerplate, more than a worker's memory as Python objects
(Beam's grouped values can be iterated again)."""
from __future__ import annotations

import tracemalloc

from pipeline.dedup import beam_dedup

GROUP = 100_000


class LazyGroup:
    """A grouped value made item by item on each pass, as a runner may page it in."""

    def __init__(self, make, n: int = GROUP):
        self.make, self.n = make, n

    def __iter__(self):
        return (self.make(i) for i in range(self.n))


def peak_mb(run) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def drain(results) -> int:
    return sum(1 for _ in results)


def test_the_star_steps_hold_no_group():
    nodes = LazyGroup(lambda i: GROUP - i)
    assert peak_mb(lambda: drain(beam_dedup._star(("key", nodes)))) < 2
    assert peak_mb(lambda: drain(beam_dedup._large_star((0, nodes)))) < 2
    assert peak_mb(lambda: drain(beam_dedup._small_star((5, nodes)))) < 2
    assert list(beam_dedup._small_star((5, [9, 3, 7]))) == [(5, 3), (9, 3), (7, 3)]
    assert beam_dedup._star_violation((1, {"out": nodes, "in": []})) == 1
    assert beam_dedup._star_violation((1, {"out": [0, 0], "in": []})) == 0
    assert beam_dedup._star_violation((1, {"out": [0], "in": [4]})) == 1
    assert beam_dedup._star_violation((1, {"out": [], "in": [4, 5]})) == 0


def test_a_cluster_and_a_common_line_are_counted_without_holding_them():
    def member(i):
        return {"node": i, "part": i % 7, "row": i, "id": f"d{i}", "text_key": i % 3, "url_key": None, "length": i % 11,
                "q_rank": 0, "noise": 0, "date_key": "", "origin": 1, "survivor": None, "survivor_run": None}

    assign = beam_dedup._assign_cluster(["length", "id"])
    assert peak_mb(lambda: drain(assign(("cluster", LazyGroup(member))))) < 2
    rows = [row for _, row in assign(("cluster", LazyGroup(member, 30)))]
    assert [r["cluster_size"] for r in rows] == [30] * 30 and rows[10]["reason"] is None  # d10: longest, smallest id
    assert rows[10]["cluster_id"] == "d10" and {r["reason"] for r in rows} == {None, "dup_exact", "dup_near"}

    over = beam_dedup._over_limit({"*": 100, "zh": 1_000_000})
    line = LazyGroup(lambda i: (i % 5, i, "en" if i % 2 else "zh"))
    assert peak_mb(lambda: drain(over(("line", line)))) < 2
    removed = list(over(("line", LazyGroup(line.make, 200))))
    assert len(removed) == 100 and removed[0] == (1, {"row": 1, "key": "line", "docs": 200}), "English ones only"
