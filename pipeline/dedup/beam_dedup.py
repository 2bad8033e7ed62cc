"""Dedup clustering on Beam (GroupByKey / CoGroupByKey): the same graph as `spark_dedup`.

Beam pipelines are acyclic, so the connected-components loop runs one pipeline per round:
each reads the previous round's edges, applies large-star then small-star, writes the new edges
and a one-number check (how many nodes break the star shape), which is all the driver reads.
Against a dedup index, the indexed documents sharing a key with a new one (found by
`pipeline.dedup.index.find_neighbours`) join the graph and win their clusters, as in `spark_dedup`;
those a new document replaces stay out, and a run retiring them from its own index writes them out.
Paragraph dedup counts line keys over the survivors with a GroupByKey on the key.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.minhash import jaccard_at_least
from pipeline import storage
from pipeline.dedup.index import INDEX_SCHEMA, REPLACED_SCHEMA, Retiring, replaced_dir
from pipeline.dedup.passes import (ASSIGNMENT_SCHEMA, EXISTING, REASON_EXACT, REASON_NEAR, REASON_URL,
                                   REMOVAL_SCHEMA, assignment_dir)

_MEMBER_COLUMNS = ["node", "part", "row", "id", "text_key", "url_key", "length", "q_rank", "noise", "date_key"]
_INDEXED_COLUMNS = ["node", "id", "survivor", "survivor_run", "text_key", "url_key"]
_INDEXED_DEFAULTS = {"part": None, "row": None, "length": 0, "q_rank": 0, "noise": 0, "date_key": ""}


# A grouped value is iterated twice where a function needs two passes, never made a list: Beam's
# grouped values can be iterated again, and one group may be huge (a text repeated in a hundred million
# pages, a line of boilerplate, a hub node), more than a worker's memory as Python objects.


def _star(item: tuple) -> Iterable[tuple[int, int]]:
    """Every node of a key group -> the group's smallest node."""
    _, nodes = item
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
            a, b = np.frombuffer(su, "<i4"), np.frombuffer(sv, "<i4")
            if jaccard_at_least(np.array([0, len(a)]), a, np.array([0, len(b)]), b, threshold)[0]:
                yield u, v
    return keep


def _attach_root_set(item: tuple) -> Iterable[tuple[int, tuple[int, bytes | None]]]:  # v's shingle set as bytes
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
    m = min(min(ys), x)
    return ((y, m) for y in ys if y > x)


def _small_star(item: tuple) -> Iterable[tuple[int, int]]:
    u, vs = item
    m = min(vs)
    yield u, m
    for v in vs:
        if v != m:
            yield v, m


_NONE = object()  # no value (a node may be 0)


def _star_violation(item: tuple) -> int:
    """1 when a node points at two nodes, or points somewhere while another points at it."""
    _, grouped = item
    outs = iter(grouped["out"])
    first = next(outs, _NONE)
    return int(first is not _NONE and (any(o != first for o in outs) or next(iter(grouped["in"]), _NONE) is not _NONE))


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


def _write_listing(paths, root: str, label: str):
    """The files a step's tasks wrote (`storage.scratch_sink`'s names) as `root`'s listing (`storage.listed_files`):
    Beam's text sink keeps the lines of the successful attempts only, so a failed attempt's file, which
    may lie in the folder, is never read."""
    return paths | f"{label}: write" >> beam.io.WriteToText(storage.join(root, storage.LISTING), num_shards=1,
                                                           shard_name_template="")


def _read_files(p, files: list[str], label: str, columns: list[str] | None = None):
    """The rows of `files`: the signature pass's, named by its tasks, never matched by a pattern, which
    would take a failed attempt's file on an object store too (`storage.scratch_sink`)."""
    return (p | f"{label}: files" >> beam.Create(files)
            | f"read {label}" >> beam.io.ReadAllFromParquet(columns=columns))


def _read_signatures(p, sig_files: list[str], columns: list[str], label: str = "signatures"):
    return (_read_files(p, sig_files, label, columns + ["error"])
            | f"{label} without errors" >> beam.Filter(lambda r: r["error"] is None))


def _indexed_in_graph(sig, neighbour_files: list[str], columns: list[str], members_dir: str,
                      retiring: Retiring | None):
    """The indexed documents in the graph: those sharing a key the run clusters by with a new one
    (found by `pipeline.dedup.index.find_neighbours`) but those a new document replaces (the same
    document again: `spark_dedup.with_replaced`), `columns` of them; their `_INDEXED_COLUMNS` go to
    `members_dir` for the members pipeline. `sig`: the new documents, with their ids. One join by id
    serves both and the retiring, which gets the replaced rows of its parts."""
    new = sig | "new by id" >> beam.Map(lambda r: (r["id"], {"url_key": r["url_key"], "text_key": r["text_key"]}))
    indexed = (sig.pipeline | "indexed: files" >> beam.Create(neighbour_files)
               | "indexed: read" >> beam.io.ReadAllFromParquet(
                   columns=sorted({*columns, *_INDEXED_COLUMNS, "file", "in_graph"}))
               | "indexed: by id" >> beam.Map(lambda r: (r["id"], r)))
    marked = ({"new": new, "indexed": indexed} | "join ids" >> beam.CoGroupByKey()
              | "replaced?" >> beam.FlatMap(lambda kv: [(r, any(_same_document(r, n) for n in kv[1]["new"]))
                                                        for r in kv[1]["indexed"]]))
    if retiring is not None:
        replaced = (marked | "replaced" >> beam.FlatMap(
                        lambda m: [(m[0]["file"], {"file": m[0]["file"], "node": m[0]["node"]})]
                        if m[1] and m[0]["file"] in retiring.files else [])
                    | "replaced by file" >> beam.GroupByKey()
                    | "write replaced" >> beam.Map(_write_rows(functools.partial(replaced_dir, retiring.root),
                                                               "replaced.parquet", REPLACED_SCHEMA, "node")))
        _write_listing(replaced, retiring.root, "replaced listing")
    in_graph = marked | "in the graph" >> beam.FlatMap(lambda m: [m[0]] if m[0]["in_graph"] and not m[1] else [])
    _ = in_graph | "write members" >> beam.io.WriteToParquet(
        storage.join(members_dir, "indexed"), pa.schema([INDEX_SCHEMA.field(c) for c in _INDEXED_COLUMNS]),
        file_name_suffix=".parquet")
    return in_graph | "graph columns" >> beam.Map(lambda r: {c: r[c] for c in columns})


def _same_document(indexed: dict, new: dict) -> bool:
    """Same id (the caller's join) and URL, or text when either has no URL."""
    if indexed["url_key"] is not None and new["url_key"] is not None:
        return indexed["url_key"] == new["url_key"]
    return indexed["text_key"] == new["text_key"]


def survivor_sort_key(order: list[str]):
    """Python twin of spark_dedup.survivor_key: indexed documents first, then higher quality step,
    less copy noise, earlier crawl date, longer, smaller id; smaller node last."""
    by = {"q_score": lambda m: -m["q_rank"], "noise": lambda m: m["noise"], "crawl_date": lambda m: m["date_key"],
          "length": lambda m: -m["length"], "id": lambda m: m["id"]}
    getters = [by[k] for k in order]
    return lambda m: (m["origin"], *[g(m) for g in getters], m["node"])


def _assign_cluster(order: list[str]):
    key = survivor_sort_key(order)

    def assign(item: tuple) -> Iterable[tuple[int, dict]]:
        _, members = item
        size, best, best_key = 0, None, None
        for m in members:
            size += 1
            if best is None or key(m) < best_key:
                best, best_key = m, key(m)
        existing = EXISTING if best["origin"] == 0 else ""
        survivor = best["survivor"] if best["origin"] == 0 else best["id"]  # an indexed one reports its survivor
        for m in members:
            if m["origin"] == 0:  # indexed documents are never rewritten
                continue
            if m["node"] == best["node"]:
                reason = None
            elif m["text_key"] == best["text_key"]:
                reason = REASON_EXACT + existing
            elif m["url_key"] is not None and m["url_key"] == best["url_key"]:
                reason = REASON_URL + existing
            else:
                reason = REASON_NEAR + existing
            yield m["part"], {"row": m["row"], "cluster_id": survivor, "cluster_size": size, "reason": reason,
                              "survivor_run": best["survivor_run"] if best["origin"] == 0 else None}
    return assign


def _member_with_root(item: tuple) -> Iterable[tuple[int, dict]]:
    _, grouped = item
    roots = list(grouped["root"])  # one at most: components are stars now
    if roots:
        for member in grouped["member"]:
            yield roots[0], member


def _write_table(folder: str, name: str, table: pa.Table) -> str:
    """`table` as a `storage.scratch_sink` file of `folder` named `name`; the file's name."""
    sink = storage.scratch_sink(folder, name, table.schema)
    try:
        sink.write(table)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.written


def _write_rows(folder_of: Callable[[int], str], name: str, schema: pa.Schema, order: str):
    """(key, rows): the rows (dicts of `schema`'s columns), sorted by `order`, as a file of
    <folder_of(key)> named `name` (`storage.scratch_sink`); the file's name."""
    def write(item: tuple) -> str:
        key, rows = item
        return _write_table(folder_of(key), name, pa.Table.from_pylist(sorted(rows, key=lambda r: r[order]), schema))
    return write


def assignments(engine, sig_files: list[str], assign_root: str, work_dir: str, p, threshold: float,
                survivor_order: list[str], max_rounds: int, neighbour_files: list[str],
                retiring: Retiring | None) -> dict:
    """Write the per-part assignment table under `assign_root/part=N/` and, when `retiring`, the rows
    of its indexed parts that the run replaces under its root's file=N/; return small counts.
    `sig_files`: the signature pass's files."""
    cols = ["node", "text_key", "url_key", "n_shingles", "bands"] + (["shingles"] if p.verify else [])
    edges_dir = storage.join(work_dir, "edges-0")
    members_dir = storage.join(work_dir, "indexed_members")
    for folder in [members_dir, assign_root] + ([retiring.root] if retiring else []):
        storage.rmtree(folder)  # an interrupted attempt's files
    with engine.pipeline() as pl:
        sig = _read_signatures(pl, sig_files, cols + (["id"] if neighbour_files else []))
        if neighbour_files:
            indexed = _indexed_in_graph(sig, neighbour_files, cols, members_dir, retiring)
            sig = (sig, indexed) | "graph" >> beam.Flatten()
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
        members = (_read_signatures(pl, sig_files, _MEMBER_COLUMNS)
                   | "member fields" >> beam.Map(lambda r: {**{k: r[k] for k in _MEMBER_COLUMNS}, "origin": 1}))
        if neighbour_files:
            indexed = (pl | "indexed members" >> beam.io.ReadFromParquet(storage.join(members_dir, "*.parquet"))
                       | "indexed fields" >> beam.Map(lambda r: {**_INDEXED_DEFAULTS, **r, "origin": 0}))
            members = (members, indexed) | "all members" >> beam.Flatten()
        members = members | "member by node" >> beam.Map(lambda m: (m["node"], m))
        written = ({"root": node_root, "member": members} | "join roots" >> beam.CoGroupByKey()
                   | "by root" >> beam.FlatMap(_member_with_root) | "cluster" >> beam.GroupByKey()
                   | "assign" >> beam.FlatMap(_assign_cluster(survivor_order))
                   | "by part" >> beam.GroupByKey()
                   | "write parts" >> beam.Map(_write_rows(functools.partial(assignment_dir, assign_root),
                                                           "assign.parquet", ASSIGNMENT_SCHEMA, "row")))
        _write_listing(written, assign_root, "assignments listing")
    return {"candidate_edges": n_edges, "cc_rounds": rounds}


def _duplicate_rows(item: tuple[int, str]) -> Iterable[tuple[tuple[int, int], bool]]:
    """(part, row) of every document the clustering dropped, from one part's assignment file."""
    part, path = item
    table = pq.read_table(storage.open_input(path), columns=["row", "reason"])
    for row, reason in zip(table.column("row").to_pylist(), table.column("reason").to_pylist()):
        if reason is not None:
            yield (part, row), True


def _over_limit(max_docs: dict):
    least = min(max_docs.values())

    def emit(item: tuple) -> Iterable[tuple[int, dict]]:
        key, occurrences = item
        docs = sum(1 for _ in occurrences)
        if docs <= least:
            return
        for part, row, lang in occurrences:
            scope = "zh" if lang and (lang.startswith("zh") or lang.startswith("cmn")) else lang
            if docs > max_docs.get(scope or "*", max_docs["*"]):
                yield part, {"row": row, "key": key, "docs": docs}
    return emit


def _write_removals(removal_root: str):
    # Beam picks the output's coder from this annotation: the file and the keys written, not a count
    def write(item: tuple) -> tuple[str, list[int]]:
        part, rows = item
        rows = sorted(rows, key=lambda r: (r["row"], r["key"]))
        path = _write_table(assignment_dir(removal_root, part), "remove.parquet",
                            pa.Table.from_pylist(rows, REMOVAL_SCHEMA))
        return path, sorted({r["key"] for r in rows})
    return write


def paragraph_removals(engine, para_files: list[str], assign_root: str, removal_root: str, max_docs: dict,
                       parts: list[int], work_dir: str) -> dict:
    """Count each line key over the surviving documents (GroupByKey on the key); write, per part,
    the (row, key, docs) of lines found in more documents than their language allows. `para_files`:
    the signature pass's paragraph files."""
    listed = storage.listed_files(assign_root)
    assigned = [(part, f) for part in parts for f in listed.get(assignment_dir(assign_root, part), [])]
    storage.rmtree(removal_root)  # an interrupted attempt's files
    with engine.pipeline() as pl:
        paras = (_read_files(pl, para_files, "paragraphs")
                 | "by document" >> beam.Map(lambda r: ((r["part"], r["row"]), (r["key"], r["lang"]))))
        dups = (pl | "assignment files" >> beam.Create(assigned) | "dropped rows" >> beam.FlatMap(_duplicate_rows))
        written = ({"para": paras, "dup": dups} | "survivors only" >> beam.CoGroupByKey()
                   | "by key" >> beam.FlatMap(lambda kv: [] if kv[1]["dup"] else
                                              [(key, (kv[0][0], kv[0][1], lang)) for key, lang in kv[1]["para"]])
                   | "count" >> beam.GroupByKey() | "over the limit" >> beam.FlatMap(_over_limit(max_docs))
                   | "by part" >> beam.GroupByKey() | "write parts" >> beam.Map(_write_removals(removal_root)))
        _write_listing(written | "files" >> beam.Map(lambda w: w[0]), removal_root, "removals listing")
        distinct = written | "keys" >> beam.FlatMap(lambda w: w[1]) | "distinct keys" >> beam.Distinct()
        _write_count(distinct | "key count" >> beam.combiners.Count.Globally(), storage.join(work_dir, "removed"),
                     "removed")
    return {"paragraph_keys_removed": _read_count(storage.join(work_dir, "removed"))}
