"""Common mistakes of a first walk through the README, each answered by a message that says what to do
instead of a traceback, a wrong hint or an empty page. Small fake workdirs (report_fixtures), no engine."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

import pipeline.engines
from pipeline.cli import main as glmdata
from report_fixtures import make_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an engine was started")
    monkeypatch.setattr(pipeline.engines, "make_engine", refuse)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("walkthrough") / "run")


def test_inspect_reason_on_a_workdir_names_the_stage_that_holds_it(run, capsys):
    """`glmdata inspect work/demo -r dup_exact`: the error pointed at work/demo/quality whatever the reason."""
    assert glmdata(["inspect", str(run), "-r", "dup_exact"]) == 2
    err = capsys.readouterr().err
    assert f"glmdata inspect {run / 'dedup'} -r dup_exact" in err and "quality" not in err
    assert glmdata(["inspect", str(run), "-r", "lang_other"]) == 2  # a prefix, as -r takes it
    assert f"glmdata inspect {run / 'langid'} -r lang_other" in capsys.readouterr().err
    assert glmdata(["inspect", str(run), "--errors"]) == 2
    assert f"glmdata inspect {run / 'ingest'} --errors" in capsys.readouterr().err
    assert glmdata(["inspect", str(run), "-r", "no_such_reason"]) == 2
    assert "no finished stage there dropped documents as 'no_such_reason'" in capsys.readouterr().err


def test_inspect_of_a_mistyped_stage_folder_lists_the_stages(run, capsys):
    assert glmdata(["inspect", str(run / "qualty")]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and f"stages in {run}: ingest, langid, quality, dedup, mix" in err
    assert glmdata(["inspect", str(run.parent / "nowhere" / "quality")]) == 2  # no workdir there: no list
    assert "stages in" not in capsys.readouterr().err


@pytest.mark.parametrize("platform,config,extra,why", [
    ("emr", "emr.yaml", [], "(add --wait to follow the emr job)"),
    ("spark-standalone", "demo.yaml", ["--wait"], "(--platform spark-standalone runs in the foreground)"),
])
def test_wait_timeout_without_wait_says_what_is_missing(capsys, platform, config, extra, why):
    """EMR was said to run "in the foreground" when only --wait was missing."""
    argv = ["submit", "--platform", platform, "--config", str(CONFIGS / config), "--dry-run", "--wait-timeout", "60"]
    assert glmdata(argv + extra) == 2
    assert why in capsys.readouterr().err


def test_an_unreachable_bucket_is_a_message_not_a_traceback(monkeypatch, capsys):
    """configs/emr.yaml's workdir before its bucket is filled in, or without credentials or network: pyarrow's
    OSError came out as a traceback (from report, inspect, run, submit's uploads alike)."""
    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var, value in (("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}"), ("AWS_ACCESS_KEY_ID", "x"),
                       ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(var, value)
    assert glmdata(["report", "s3://my-glmdata-bucket/runs/glm130b"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "my-glmdata-bucket" in err and "Traceback" not in err


def test_run_from_a_later_stage_on_a_new_workdir_writes_no_empty_report(tmp_path, monkeypatch, capsys):
    """`glmdata run --from dedup` before anything ran: the run stops before dedup, and then wrote a report
    page of no stage at all ("HTML report: ..."), which `glmdata report` itself refuses to write."""
    class Idle:
        def close(self):
            pass
    monkeypatch.setattr(pipeline.engines, "make_engine", lambda cfg: Idle())
    workdir = tmp_path / "new"
    argv = ["run", "--config", str(CONFIGS / "demo.yaml"), "--set", f"run.workdir={workdir}", "--from", "dedup"]
    assert glmdata(argv) == 1
    out = capsys.readouterr().out
    assert "stopped before dedup" in out and f"no report: no stage of {workdir} has finished" in out
    assert not (workdir / "report").exists()


def test_report_of_a_stage_folder_names_the_workdir(run, capsys):
    assert glmdata(["report", str(run / "quality")]) == 2
    assert f"is one stage's folder: report its run, glmdata report {run}" in capsys.readouterr().err


def test_submit_before_make_dist_is_not_a_lost_job(tmp_path, capsys):
    """Exit 2 of `glmdata submit --wait` means it lost track of a job that may still be running; a missing
    `make dist` archive, when nothing was uploaded or started, exited 2 as well."""
    argv = ["submit", "--platform", "emr", "--config", str(CONFIGS / "emr.yaml"), "--dist", str(tmp_path), "--wait"]
    assert glmdata(argv) == 3
    assert "glmdata-env.tar.gz is missing: run `make dist` first" in capsys.readouterr().err


def test_the_demo_ends_with_commands_that_run_without_an_activated_venv(monkeypatch):
    """README's commands say `glmdata ...`, which `make setup` installs in .venv/bin, not on PATH: after
    `make demo` a first `glmdata inspect work/demo` was "command not found"."""
    from pipeline.demo import next_steps

    monkeypatch.chdir(CONFIGS.parent)
    first = next_steps(CONFIGS.parent / "work" / "demo").removeprefix("next: ").split(",")[0].split()
    assert Path(first[0]).is_file() and Path(first[0]).parent == Path(os.path.relpath(Path(sys.executable).parent))
    assert first[1:] == ["inspect", "work/demo"]


def test_submit_without_the_platforms_cli_stops_before_uploading(tmp_path, monkeypatch, capsys):
    """No `aws` here: the archive was uploaded (hundreds of MB) before running `aws` failed."""
    import pipeline.submit

    uploads = []
    monkeypatch.setattr(pipeline.submit, "upload", lambda src, dst: uploads.append(dst))
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no aws, no gcloud
    (tmp_path / "glmdata-env.tar.gz").write_bytes(b"archive")
    argv = ["submit", "--platform", "emr", "--config", str(CONFIGS / "emr.yaml"), "--dist", str(tmp_path)]
    assert glmdata(argv) == 3 and not uploads
    assert "submit: aws is not on PATH, and --platform emr submits with it; nothing was uploaded" in capsys.readouterr().err


def test_glmdata_says_its_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        glmdata(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("glmdata 0.1")


def test_every_option_of_the_trainer_plan_says_what_it_is(capsys):
    from trainer.plan import main as plan

    with pytest.raises(SystemExit):
        plan(["--help"])
    assert "the GPU model" in capsys.readouterr().out


def test_a_workdir_given_for_its_shards_folder_is_pointed_there(tmp_path):
    from trainer.shard_format import ShardFormatError, read_manifest, write_manifest

    write_manifest(str(tmp_path / "work" / "shards"), {"shards": []})
    with pytest.raises(ShardFormatError, match=f"no manifest; {tmp_path / 'work' / 'shards'} holds one"):
        read_manifest(str(tmp_path / "work"))
    with pytest.raises(ShardFormatError, match="is .* the output of `glmdata shards`"):
        read_manifest(str(tmp_path))
