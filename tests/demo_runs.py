"""The real demo pipeline run twice and compared, by the resume test (killed and resumed vs
uninterrupted) and the cluster test (standalone cluster with an executor killed vs local mode); the
uninterrupted local run is one reference, shared with the demo report test."""
from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import yaml

from conftest import REPO

DEMO = REPO / "configs" / "demo.yaml"
KILLED = "dedup"  # signatures, then many small Spark jobs of clustering, then the write: seconds to catch it

# The runs are short: a JVM that starts quickly (no UI, C1 JIT only) costs a third less CPU.
QUICK_JVM = {"spark.ui.enabled": "false", "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def demo_sources(corpus: Path | str) -> list[dict]:
    """configs/demo.yaml's ingest sources, reading the demo corpus at `corpus` (a folder or a URI)."""
    sources = yaml.safe_load(DEMO.read_text())["ingest"]["sources"]
    for src in sources:
        src["paths"] = [p.replace("../work/demo-corpus", str(corpus)) for p in src["paths"]]
    return sources


def demo_overrides(corpus: Path, workdir: Path) -> dict:
    """The settings that make configs/demo.yaml run as `make demo` does on `corpus`, into `workdir`
    (QUICK_JVM: short runs)."""
    return {"run.workdir": str(workdir), "ingest.sources": demo_sources(corpus), "run.spark.conf": QUICK_JVM}


def demo_config(corpus: Path, workdir: Path, **overrides):
    """configs/demo.yaml loaded with demo_overrides and `overrides`."""
    from pipeline.stages import load_config

    return load_config(DEMO, {**demo_overrides(corpus, workdir), **overrides})


@dataclass(frozen=True)
class ReferenceRun:
    """configs/demo.yaml run uninterrupted in local mode (no report) on `corpus` into `workdir`, in
    the background: `stages()` waits for it and names the stages it ran. Read its workdir, never
    write there: later tests compare with it."""
    corpus: Path
    workdir: Path
    summaries: Future

    def stages(self, timeout: float = 300) -> list[str]:
        return [s["stage"] for s in self.summaries.result(timeout=timeout)]


def start_reference_run(pool: Executor, root: Path, engine) -> ReferenceRun:
    """Generate the demo corpus under `root` and start the reference run there on `engine`."""
    from rich.console import Console

    from pipeline.demo_corpus import generate
    from pipeline.run_all import run_pipeline

    corpus, workdir = root / "corpus", root / "work"
    generate(corpus)
    run = pool.submit(run_pipeline, demo_config(corpus, workdir), engine, report=False, console=Console(quiet=True))
    return ReferenceRun(corpus, workdir, run)


def wait_for_killed_stage(workdir: Path, still_running: Callable[[], bool], describe: Callable[[], str],
                          timeout: float) -> None:
    """Return once KILLED has written its signatures into its private folder: its upstream stages
    committed, the stage itself not. `describe()` says why the run stopped early."""
    deadline = time.time() + timeout
    while not list((workdir / ".tmp").glob(f"{KILLED}-*/_work/signatures/*.parquet")):
        assert still_running(), f"the run stopped before {KILLED} began:\n{describe()}"
        assert time.time() < deadline, f"timed out waiting for {KILLED} to start"
        time.sleep(0.05)


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
