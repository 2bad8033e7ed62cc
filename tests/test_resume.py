"""Resume: the real `glmdata run --config configs/demo.yaml` on the demo corpus, killed with SIGKILL
in the middle of dedup, then run again, commits what an uninterrupted run commits; the stages that
had finished before the kill are skipped (their `_SUCCESS` untouched), dedup and the rest re-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.run_all import pipeline_stages

from conftest import REPO
from demo_runs import DEMO, KILLED, committed_output, demo_overrides, wait_for_killed_stage

FINISHED_BEFORE_KILL = ["ingest", "langid", "quality", "pii"]


def _glmdata_run(corpus: Path, workdir: Path) -> list[str]:
    """`glmdata run` of configs/demo.yaml as `make demo` runs it, on a corpus and into a workdir under tmp_path."""
    sets = [a for k, v in demo_overrides(corpus, workdir).items()
            for a in ("--set", f"{k}={json.dumps(v, ensure_ascii=False)}")]
    return [sys.executable, "-m", "pipeline.cli", "run", "--config", str(DEMO), *sets, "--no-report"]


def _kill_in_the_middle_of_killed_stage(cmd: list[str], workdir: Path, log: Path, timeout: float = 150.0) -> None:
    """Start the run; SIGKILL its process group (driver, JVM, Python workers) once the killed stage
    has written its signatures into its private folder: upstream committed, the stage not."""
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the run while we wait
        proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    wait_for_killed_stage(workdir, lambda: proc.poll() is None,
                          lambda: f"exit code {proc.returncode}\n" + log.read_text(errors="replace")[-3000:], timeout)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _success_markers(workdir: Path, stages: list[str]) -> dict[str, tuple[bytes, int]]:
    return {s: ((workdir / s / "_SUCCESS").read_bytes(), (workdir / s / "_SUCCESS").stat().st_mtime_ns) for s in stages}


def test_real_pipeline_killed_in_dedup_resumes_to_identical_output(tmp_path, demo_reference):
    # The uninterrupted run is the session's reference (conftest.demo_reference): when this test is the
    # first to use it, it runs meanwhile in this process's Spark session (both runs spend much of their
    # time waiting on Spark's scheduling, so side by side they take little longer).
    wd = tmp_path / "killed"
    cmd = _glmdata_run(demo_reference.corpus, wd)
    _kill_in_the_middle_of_killed_stage(cmd, wd, tmp_path / "killed.log")
    assert all((wd / s / "_SUCCESS").exists() for s in FINISHED_BEFORE_KILL)
    assert not (wd / KILLED).exists(), f"{KILLED} committed before the kill"
    assert list((wd / ".tmp").glob(f"{KILLED}-*")), "the kill left the stage's half-written folder"
    before = _success_markers(wd, FINISHED_BEFORE_KILL)

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for stage in pipeline_stages():
        assert (f"{stage}: skipped" in resumed.stdout) == (stage in FINISHED_BEFORE_KILL), stage
    assert _success_markers(wd, FINISHED_BEFORE_KILL) == before, "a stage finished before the kill ran again"
    assert not list((wd / ".tmp").glob(f"{KILLED}-*")), "the killed attempt's folder is cleaned up"
    assert not [p for p in wd.rglob("*") if ".inprogress" in p.name]

    assert demo_reference.stages() == pipeline_stages()
    expected = committed_output(demo_reference.workdir)
    assert committed_output(wd) == expected
    assert {"ingest/data", "dedup/data", "dedup/rejected/dup_near", "mix/data", "encode/data"} <= set(expected)
    assert any(k.startswith("shards/shard-") and k.endswith(".arrow") for k in expected)
    planted = expected["decontaminate/stats.json"]["report"]["benchmarks"]["demo-bench"]
    assert (planted["documents"], planted["items_found"]) == (12, 12)  # every page quoting the demo benchmark
