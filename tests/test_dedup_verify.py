"""The verification of candidate pairs: shingle sets as bytes, the merge that counts their
intersection, and Spark's UDF over them, against Python sets."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.minhash import jaccard_at_least
from pipeline.dedup.index import shingle_bytes, shingle_lists, shingle_sets

# Small values collide often (large intersections); the int32 extremes check the signed order.
_SET = st.one_of(st.none(), st.sets(st.one_of(st.integers(-8, 8), st.sampled_from([-2**31, 2**31 - 1])),
                                    max_size=12).map(sorted))


def _expected(a: list[int] | None, b: list[int] | None, threshold: float) -> bool:
    if a is None or b is None:
        return False
    common = len(set(a) & set(b))
    return common >= threshold * len(set(a) | set(b))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_SET, _SET), max_size=20), st.sampled_from([0.0, 0.5, 0.8, 1.0]), st.integers(0, 3))
def test_the_merge_and_the_udf_bodies_equal_python_sets(pairs, threshold, cut):
    from pipeline.dedup.spark_dedup import _similar, _similar_row

    a = pa.array([p[0] for p in pairs], pa.list_(pa.int32()))
    b = pa.array([p[1] for p in pairs], pa.list_(pa.int32()))
    a, b = a.slice(min(cut, len(a))), b.slice(min(cut, len(b)))  # Arrow slices keep offsets into a longer buffer
    expected = [_expected(x, y, threshold) for x, y in zip(a.to_pylist(), b.to_pylist())]
    su, sv = shingle_bytes(a), shingle_bytes(b)
    assert shingle_lists(su).to_pylist() == a.to_pylist()
    assert _similar(threshold)(su, sv).to_pylist() == expected
    assert [_similar_row(threshold)(x, y) for x, y in zip(su.to_pylist(), sv.to_pylist())] == expected
    known = [x is not None and y is not None for x, y in zip(a.to_pylist(), b.to_pylist())]
    merged = jaccard_at_least(*shingle_sets(su), *shingle_sets(sv), threshold)
    assert [bool(m) and k for m, k in zip(merged, known)] == expected


def test_bytes_are_little_endian_int32():
    sets = shingle_bytes(pa.array([[1, -2], None, []], pa.list_(pa.int32())))
    assert sets.to_pylist() == [np.array([1, -2], "<i4").tobytes(), None, b""]


@pytest.mark.parametrize("partitions", [1, 3])
def test_spark_verification_keeps_the_similar_pairs_on_any_partitioning(spark_session_engine, partitions):
    from pipeline.dedup.spark_dedup import map_pass_workers, verified

    spark = spark_session_engine.spark
    rng = np.random.default_rng(partitions)
    base = [sorted(set(rng.integers(-2**31, 2**31, 40).tolist())) for _ in range(6)]
    sets = [s[:k] for s in base for k in (len(s), len(s) - 3, len(s) // 2)]  # J ~ 0.92 and 0.5 with the whole
    nodes = list(range(len(sets)))
    sets_df = spark.createDataFrame([(n, shingle_bytes(pa.array([s], pa.list_(pa.int32())))[0].as_py())
                                     for n, s in zip(nodes, sets)], "node long, shingles binary")
    pairs = [(u, v) for u in nodes for v in nodes if v < u]
    near = spark.createDataFrame(pairs, "u long, v long").repartition(partitions)
    key = "spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled"
    before = spark.conf.get(key, None)
    with map_pass_workers(spark):
        got = sorted(tuple(r) for r in verified(near, sets_df, 0.8).collect())
    assert spark.conf.get(key, None) == before
    expected = sorted((u, v) for u, v in pairs if _expected(sets[u], sets[v], 0.8))
    assert got == expected and 0 < len(expected) < len(pairs)
