"""The real demo pipeline run twice and compared, by the resume test (killed and resumed vs
uninterrupted) and the cluster test (standalone cluster with an executor killed vs local mode)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

# The runs are short: a JVM that starts quickly (no UI, C1 JIT only) costs a third less CPU.
QUICK_JVM = {"spark.ui.enabled": "false", "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    return [_without_timings(v) for v in value] if isinstance(value, list) else value


def committed_output(workdir: Path, stages: list[str] | None = None) -> dict[str, object]:
    """Every committed file (of `stages`' folders when given): each Parquet folder's rows as a
    multiset (the contract fixes the rows, not their order or part files), other files' bytes
    (shards, manifest, tokenizer model), stats.json less timings, and each `_SUCCESS`'s config hash
    and input fingerprint; the workdir's own path blanked out."""
    out: dict[str, object] = {}
    for path in sorted(p for p in workdir.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(workdir).parts):
        rel = path.relative_to(workdir).as_posix()
        if stages is not None and rel.split("/")[0] not in stages:
            continue
        if path.suffix == ".parquet":
            rows = (json.dumps(r, sort_keys=True, ensure_ascii=False, default=repr) for r in pq.read_table(path).to_pylist())
            out.setdefault(path.parent.relative_to(workdir).as_posix(), Counter()).update(rows)
        elif path.name == "_SUCCESS":
            marker = json.loads(path.read_text())
            out[rel] = (marker["config_hash"], marker["input_fingerprint"])
        elif path.name == "stats.json":
            out[rel] = _without_timings(json.loads(path.read_text().replace(str(workdir), "<workdir>")))
        else:
            out[rel] = path.read_bytes().replace(str(workdir).encode(), b"<workdir>")
    return out
