"""`glmdata run`: every stage in order with one engine, finished stages skipped, --from/--until, report."""
from __future__ import annotations

import subprocess
import sys

import pytest

from e2e_toys import ORDER, write_inputs
from pipeline.config import UsageError
from pipeline.run_all import pipeline_stages, run_pipeline

from conftest import REPO, make_run_config


@pytest.fixture
def toy_config(tmp_path, shared_data):
    write_inputs(tmp_path / "in", shared_data, files=3, lines_per_file=30)
    return make_run_config(tmp_path, {"e2e_source": {"inputs": str(tmp_path / "in" / "*.jsonl")},
                                      "e2e_filter": {"min_chars": 300}})


def test_runs_in_order_then_skips_then_reruns_from(toy_config, spark_session_engine):
    first = run_pipeline(toy_config, spark_session_engine, order=ORDER)
    assert [s["stage"] for s in first] == ORDER and not any(s.get("skipped") for s in first)
    assert first[1]["in"]["docs"] == first[0]["kept"]["docs"] == 90
    assert first[1]["dropped"]["too_short"]["docs"] > 0
    again = run_pipeline(toy_config, spark_session_engine, order=ORDER, report=False)
    assert all(s.get("skipped") for s in again)
    rerun = run_pipeline(toy_config, spark_session_engine, first="e2e_filter", order=ORDER, report=False)
    assert [s["stage"] for s in rerun] == ["e2e_filter"] and not rerun[0].get("skipped")
    assert rerun[0]["kept"] == first[1]["kept"]
    html = (toy_config.run.workdir + "/report/report.html")
    assert "e2e_filter" in open(html, encoding="utf-8").read()


def test_until_and_bad_bounds():
    assert pipeline_stages(last="e2e_source", order=ORDER) == ["e2e_source"]
    with pytest.raises(UsageError, match="--from nope: not a stage"):
        pipeline_stages(first="nope", order=ORDER)
    with pytest.raises(UsageError, match="comes after"):
        pipeline_stages(first="e2e_filter", last="e2e_source", order=ORDER)


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "--from STAGE" in out and "--until STAGE" in out
