"""Running the dedup stage on hand-made documents (tests and benchmarks): a finished upstream
stage from rows, and the stage's output read back as clusters."""
from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.schema import DOC_SCHEMA

UPSTREAM_SCHEMA = DOC_SCHEMA.append(pa.field("q_score", pa.float32()))


def write_finished_upstream(workdir: str, parts: list[list[dict]], stage: str = "pii",
                            schema_extra: list[tuple[str, str]] = ()) -> None:
    """`<workdir>/<stage>/data/part-N.parquet` from rows (missing columns get defaults) + `_SUCCESS`;
    `schema_extra`: more (column, Arrow type name) pairs."""
    base = storage.join(workdir, stage)
    storage.makedirs(storage.join(base, "data"))
    schema = UPSTREAM_SCHEMA
    for name, kind in schema_extra:
        schema = schema.append(pa.field(name, pa.type_for_alias(kind)))
    for i, rows in enumerate(parts):
        full = [{"source": "fixture", "source_file": f"f{i}", "source_offset": j, "lang": "en", **r}
                for j, r in enumerate(rows)]
        pq.write_table(pa.Table.from_pylist(full, schema), storage.join(base, "data", f"part-{i:05d}.parquet"))
    storage.write_text(storage.join(base, "_SUCCESS"), json.dumps({"config_hash": "fixture", "input_fingerprint": "fixture"}))


def read_dedup_output(stage_dir: str) -> dict:
    """{"kept": {id: (dup_cluster_id, dup_cluster_size)}, "rejected": {id: (reason, survivor id)}}."""
    kept, rejected = {}, {}
    for f in storage.expand(storage.join(stage_dir, "data")):
        for r in pq.read_table(f, columns=["id", "dup_cluster_id", "dup_cluster_size"]).to_pylist():
            kept[r["id"]] = (r["dup_cluster_id"], r["dup_cluster_size"])
    rejected_dir = storage.join(stage_dir, "rejected")
    for f in storage.expand(rejected_dir) if storage.exists(rejected_dir) else []:
        for r in pq.read_table(f, columns=["id", "reject_reason", "reject_detail"]).to_pylist():
            rejected[r["id"]] = (r["reject_reason"], r["reject_detail"])
    return {"kept": kept, "rejected": rejected}


def clustered_pairs(output: dict) -> set[tuple[str, str]]:
    """Every pair of documents that share a cluster, as (smaller id, larger id)."""
    clusters = defaultdict(list)
    for doc, (reason, survivor) in output["rejected"].items():
        if reason.startswith("dup_"):  # not paragraph_dedup:too_short, whose detail is a length
            clusters[survivor.split(" in run ")[0]].append(doc)
    pairs = set()
    for survivor, docs in clusters.items():
        pairs.update(tuple(sorted(p)) for p in combinations([survivor, *docs], 2))
    return pairs
