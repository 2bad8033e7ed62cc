"""Dedup clustering on Beam (GroupByKey / CoGroupByKey): the same graph as `spark_dedup`.

Beam pipelines are acyclic, so the connected-components loop runs one pipeline per round:
each reads the previous round's edges, applies large-star then small-star, writes the new edges
and a one-number check (how many nodes break the star shape), which is all the driver reads.
"""
from __future__ import annotations

from typing import Iterable, Tuple

import apache_beam as beam
import pyarrow as pa

from pipeline import storage
from pipeline.dedup.passes import ASSIGNMENT_SCHEMA, REASON_EXACT, REASON_NEAR, REASON_URL, assignment_dir

_MEMBER_COLUMNS = ["node", "part", "row", "id", "text_key", "url_key", "length", "q_score"]


def _star(item: tuple) -> Iterable[tuple[int, int]]:
    """Every node of a key group -> the group's smallest node."""
    _, nodes = item
    nodes = list(nodes)
    root = min(nodes)
    return ((n, root) for n in nodes if n != root)


def _representative(item: tuple) -> tuple[int, list[int]]:
    """An exact-text group's smallest node, with its bands (its copies add no new candidates)."""
    _, members = item
    return min(members, key=lambda m: m[0])


def _jaccard_at_least(threshold: float):
    def keep(item: tuple) -> Iterable[tuple[int, int]]:
        u, grouped = item
        (su,) = grouped["su"] or [None]
        for v, sv in grouped["edges"]:
            if su is None or sv is None:
                continue
            inter = len(set(su).intersection(sv))
            if inter >= threshold * (len(su) + len(sv) - inter):
                yield u, v
    return keep


def _attach_root_set(item: tuple) -> Iterable[tuple[int, tuple[int, list[int]]]]:
    v, grouped = item
    (sv,) = grouped["sv"] or [None]
    for u in grouped["edges"]:
        yield u, (v, sv)


class CandidateEdges(beam.PTransform):
    """Signature rows -> distinct (u, v) candidate edges, v < u."""

    def __init__(self, p, threshold: float):
        super().__init__()
        self.p = p
        self.threshold = threshold

    def expand(self, sig):
        p = self.p
        parts = []
        if p.exact:
            parts.append(sig | "exact: key" >> beam.Map(lambda r: (r["text_key"], r["node"]))
                         | "exact: group" >> beam.GroupByKey() | "exact: star" >> beam.FlatMap(_star))
        if p.url:
            parts.append(sig | "url: key" >> beam.FlatMap(lambda r: [(r["url_key"], r["node"])] if r["url_key"] is not None else [])
                         | "url: group" >> beam.GroupByKey() | "url: star" >> beam.FlatMap(_star))
        if p.near:
            shingled = sig | "near: shingled" >> beam.Filter(lambda r: r["n_shingles"] > 0)
            reps = shingled | "near: members" >> beam.Map(lambda r: (r["text_key"], (r["node"], r["bands"])))
            reps = (reps | "near: by text" >> beam.GroupByKey() | "near: representative" >> beam.Map(_representative)
                    if p.exact else reps | "near: all" >> beam.Values())
            near = (reps
                    | "near: buckets" >> beam.FlatMap(lambda nb: (((band, key), nb[0]) for band, key in enumerate(nb[1])))
                    | "near: group" >> beam.GroupByKey() | "near: star" >> beam.FlatMap(_star)
                    | "near: distinct" >> beam.Distinct())
            if p.verify:
                sets = sig | "verify: sets" >> beam.Map(lambda r: (r["node"], r["shingles"]))
                by_v = ({"edges": near | "verify: by v" >> beam.Map(lambda e: (e[1], e[0])), "sv": sets}
                        | "verify: join v" >> beam.CoGroupByKey() | "verify: carry v" >> beam.FlatMap(_attach_root_set))
                near = ({"edges": by_v, "su": sets} | "verify: join u" >> beam.CoGroupByKey()
                        | "verify: jaccard" >> beam.FlatMap(_jaccard_at_least(self.threshold)))
            parts.append(near)
        if not parts:
            return sig.pipeline | "no edges" >> beam.Create([])
        return parts | "all edges" >> beam.Flatten() | "distinct edges" >> beam.Distinct()


def _large_star(item: tuple) -> Iterable[tuple[int, int]]:
    x, ys = item
    ys = list(ys)
    m = min(min(ys), x)
    return ((y, m) for y in ys if y > x)


def _small_star(item: tuple) -> Iterable[tuple[int, int]]:
    u, vs = item
    vs = list(vs)
    m = min(vs)
    yield u, m
    for v in vs:
        if v != m:
            yield v, m


def _star_violation(item: tuple) -> int:
    """1 when a node points at two nodes, or points somewhere while another points at it."""
    _, grouped = item
    outs, ins = list(grouped["out"]), list(grouped["in"])
    return int(len(set(outs)) > 1 or (bool(outs) and bool(ins)))


class StarRound(beam.PTransform):
    """One large-star + small-star round over (u, v) edges with v < u."""

    def expand(self, edges):
        sym = edges | "sym" >> beam.FlatMap(lambda e: [e, (e[1], e[0])]).with_output_types(Tuple[int, int])
        large = sym | "large: group" >> beam.GroupByKey() | "large: star" >> beam.FlatMap(_large_star)
        return (large | "small: group" >> beam.GroupByKey() | "small: star" >> beam.FlatMap(_small_star)
                | "round distinct" >> beam.Distinct())


class StarViolations(beam.PTransform):
    def expand(self, edges):
        return ({"out": edges, "in": edges | "reverse" >> beam.Map(lambda e: (e[1], e[0]))}
                | "by node" >> beam.CoGroupByKey() | "violation" >> beam.Map(_star_violation)
                | "count" >> beam.CombineGlobally(sum))


def _write_edges(edges, path: str, label: str):
    return edges | f"{label}: format" >> beam.Map(lambda e: f"{e[0]} {e[1]}") | f"{label}: write" >> beam.io.WriteToText(
        storage.join(path, "edges"), file_name_suffix=".txt")


def _read_edges(p, path: str):
    return (p | "read edges" >> beam.io.ReadFromText(storage.join(path, "edges*.txt"))
            | "parse" >> beam.Map(lambda line: tuple(map(int, line.split()))).with_output_types(Tuple[int, int]))


def _write_count(count, path: str, label: str):
    return count | f"{label}: format" >> beam.Map(str) | f"{label}: write" >> beam.io.WriteToText(
        storage.join(path, "count"), num_shards=1, shard_name_template="")


def _read_count(path: str) -> int:
    return int(storage.read_text(storage.join(path, "count")).strip())


def _read_signatures(p, sig_dir: str, columns: list[str]):
    return (p | "read signatures" >> beam.io.ReadFromParquet(storage.join(sig_dir, "*.parquet"), columns=columns + ["error"])
            | "without errors" >> beam.Filter(lambda r: r["error"] is None))


def survivor_sort_key(order: list[str]):
    """Python twin of spark_dedup.survivor_key: higher q_score, longer, smaller id, smaller node."""
    by = {"q_score": lambda m: -(m["q_score"] or 0.0), "length": lambda m: -m["length"], "id": lambda m: m["id"]}
    getters = [by[k] for k in order]
    return lambda m: (*[g(m) for g in getters], m["node"])


def _assign_cluster(order: list[str]):
    key = survivor_sort_key(order)

    def assign(item: tuple) -> Iterable[tuple[int, dict]]:
        _, members = item
        members = list(members)
        best = min(members, key=key)
        for m in members:
            if m["node"] == best["node"]:
                reason = None
            elif m["text_key"] == best["text_key"]:
                reason = REASON_EXACT
            elif m["url_key"] is not None and m["url_key"] == best["url_key"]:
                reason = REASON_URL
            else:
                reason = REASON_NEAR
            yield m["part"], {"row": m["row"], "cluster_id": best["id"], "cluster_size": len(members), "reason": reason}
    return assign


def _member_with_root(item: tuple) -> Iterable[tuple[int, dict]]:
    _, grouped = item
    roots = list(grouped["root"])  # one at most: components are stars now
    if roots:
        for member in grouped["member"]:
            yield roots[0], member


def _write_part(assign_root: str):
    def write(item: tuple) -> int:
        part, rows = item
        rows = sorted(rows, key=lambda r: r["row"])
        storage.makedirs(assignment_dir(assign_root, part))
        path = storage.join(assignment_dir(assign_root, part), "assign.parquet")
        sink = storage.ParquetSink(path, ASSIGNMENT_SCHEMA)
        sink.write(pa.Table.from_pylist(rows, ASSIGNMENT_SCHEMA))
        sink.close()
        return len(rows)
    return write


def assignments(engine, sig_dir: str, assign_root: str, work_dir: str, p, threshold: float,
                survivor_order: list[str], max_rounds: int) -> dict:
    """Write the per-part assignment table under `assign_root/part=N/`; return small counts."""
    cols = ["node", "text_key", "url_key", "n_shingles", "bands"] + (["shingles"] if p.verify else [])
    edges_dir = storage.join(work_dir, "edges-0")
    with engine.pipeline() as pl:
        sig = _read_signatures(pl, sig_dir, cols)
        edges = sig | "candidates" >> CandidateEdges(p, threshold)
        oriented = edges | "orient" >> beam.Map(lambda e: (max(e), min(e)))
        _write_edges(oriented, edges_dir, "edges")
        _write_count(oriented | "edge count" >> beam.combiners.Count.Globally(), storage.join(edges_dir, "n"), "n")
        _write_count(oriented | "check" >> StarViolations(), edges_dir, "check")
    n_edges = _read_count(storage.join(edges_dir, "n"))
    rounds = 0
    while _read_count(edges_dir) > 0:
        if rounds == max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        rounds += 1
        next_dir = storage.join(work_dir, f"edges-{rounds}")
        with engine.pipeline() as pl:
            edges = _read_edges(pl, edges_dir) | "round" >> StarRound()
            _write_edges(edges, next_dir, "edges")
            _write_count(edges | "check" >> StarViolations(), next_dir, "check")
        edges_dir = next_dir

    with engine.pipeline() as pl:
        edges = _read_edges(pl, edges_dir)
        roots = (edges | "roots" >> beam.Map(lambda e: (e[1], e[1])) | "distinct roots" >> beam.Distinct())
        node_root = (edges, roots) | "node roots" >> beam.Flatten()
        members = (_read_signatures(pl, sig_dir, _MEMBER_COLUMNS)
                   | "member by node" >> beam.Map(lambda r: (r["node"], {k: r[k] for k in _MEMBER_COLUMNS})))
        _ = ({"root": node_root, "member": members} | "join roots" >> beam.CoGroupByKey()
             | "by root" >> beam.FlatMap(_member_with_root) | "cluster" >> beam.GroupByKey()
             | "assign" >> beam.FlatMap(_assign_cluster(survivor_order))
             | "by part" >> beam.GroupByKey() | "write parts" >> beam.Map(_write_part(assign_root)))
    return {"candidate_edges": n_edges, "cc_rounds": rounds}
