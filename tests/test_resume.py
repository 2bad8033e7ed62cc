"""Resume: `glmdata run` killed with SIGKILL in the middle of a stage, then run again, gives output
identical to an uninterrupted run; the stage that had finished is skipped, the killed one re-runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from e2e_toys import ORDER, output_digest, write_inputs
from pipeline.run_all import run_pipeline

from conftest import REPO, make_run_config

TOYS = str(REPO / "tests" / "e2e_toys.py")


def _config(root: Path, inputs: Path):
    return make_run_config(root, {"e2e_source": {"inputs": str(inputs / "*.jsonl")},
                                  "e2e_filter": {"min_chars": 300, "unit_seconds": 1.0}})


def _wait_for(predicate, proc, timeout=90.0):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"glmdata run exited early ({proc.returncode})"
        assert time.time() < deadline, "timed out waiting for the run to reach the middle of a stage"
        time.sleep(0.1)


def test_killed_run_resumes_to_identical_output(tmp_path, shared_data, spark_session_engine):
    write_inputs(tmp_path / "in", shared_data, files=4, lines_per_file=30)
    cfg = _config(tmp_path / "killed", tmp_path / "in")
    wd = Path(cfg.run.workdir)
    cmd = [sys.executable, TOYS, "run", "--config", cfg.path, "--no-report"]

    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # The middle of e2e_filter: the source has committed, and some (not all) filter units have written.
    _wait_for(lambda: (wd / "e2e_source" / "_SUCCESS").exists()
              and any((wd / ".tmp").glob("e2e_filter-*/data/part-*.parquet")), proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
    proc.wait()
    assert not (wd / "e2e_filter" / "_SUCCESS").exists() and not (wd / "e2e_filter").exists()

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "e2e_source: skipped" in resumed.stdout
    assert "e2e_filter: skipped" not in resumed.stdout
    assert not list((wd / ".tmp").glob("e2e_filter-*")), "the killed attempt's folder is cleaned up"
    assert not [p for p in wd.rglob("*") if ".inprogress" in p.name and ".tmp" not in p.parts]

    straight = _config(tmp_path / "straight", tmp_path / "in")
    run_pipeline(straight, spark_session_engine, order=ORDER, report=False)
    killed, expected = output_digest(wd), output_digest(straight.run.workdir)
    assert killed == expected
    assert any(k.startswith("e2e_filter/data/") for k in expected)
