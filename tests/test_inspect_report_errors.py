"""`glmdata inspect`, `report` and `export megatron` on what is not a finished run: a damaged stats.json,
a folder that is no stage, a stage or run still going, a stage older than the upstream it read, and
bad counts on the command line. Each gets a message that names the problem, not a traceback or a
silent empty answer. Tiny fake workdirs (stats.json and _SUCCESS files), no engine."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

import pipeline.engines
from pipeline.cli import main as glmdata
from pipeline.export_megatron import check_encoded
from pipeline.stage import UnitWriter


def finish(workdir: Path, stage: str, finished_at: str = "2026-01-01T00:00:00Z", config_hash: str = "c",
           inputs: dict | None = None, **stats) -> Path:
    """A finished stage as the runner leaves it: stats.json, then _SUCCESS."""
    sdir = workdir / stage
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "stats.json").write_text(json.dumps({
        "stage": stage, "engine": "spark", "seconds": 1.0, "in": {"docs": 3, "bytes": 30},
        "kept": {"docs": 3, "bytes": 30}, "dropped": {}, "errors": {}, "report": {}, "profile": {}, **stats}))
    marker = {"stage": stage, "config_hash": config_hash, "input_fingerprint": "f", "finished_at": finished_at}
    (sdir / "_SUCCESS").write_text(json.dumps(marker if inputs is None else {**marker, "inputs": inputs}))
    return sdir


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    """None of these commands may start an engine: they refuse, or read only what stages recorded."""
    def refuse(*args, **kwargs):
        raise AssertionError("an engine was started")
    monkeypatch.setattr(pipeline.engines, "make_engine", refuse)
    monkeypatch.setenv("COLUMNS", "80")  # what rich uses when the output is not a terminal


@pytest.mark.parametrize("content, said", [('{"stage": "langid", "in": {"do', "not valid JSON"),
                                           ("[]", "expected a JSON object, got list")])
def test_damaged_stats_json_is_named_not_a_traceback(tmp_path, capsys, content, said):
    finish(tmp_path, "ingest")
    (finish(tmp_path, "langid") / "stats.json").write_text(content)
    for argv in (["inspect", str(tmp_path)], ["inspect", str(tmp_path / "langid")], ["report", str(tmp_path)]):
        assert glmdata(argv) == 3, argv
        err = capsys.readouterr().err
        assert f"{tmp_path}/langid/stats.json: {said}" in err and "re-run it with --force" in err, argv


@pytest.mark.parametrize("stats, said", [({"kept": None}, "kept is null, expected"),
                                         ({"dropped": {"short": {"docs": "12"}}}, 'dropped is {"short": {"docs": "12"}}'),
                                         ({"seconds": float("nan")}, "seconds is NaN, expected a number"),
                                         ({"in": {"docs": float("inf"), "bytes": 1}}, "in is {\"docs\": Infinity")])
def test_stats_json_whose_counts_are_not_counts_is_named(tmp_path, capsys, stats, said):
    """A hand edit or a writer that put NaN, a string or nothing where a count goes: the file and the key,
    not a KeyError, a format error or "nan" in the tables."""
    finish(tmp_path, "ingest")
    finish(tmp_path, "langid", **stats)
    for argv in (["inspect", str(tmp_path)], ["inspect", str(tmp_path / "langid")], ["report", str(tmp_path)]):
        assert glmdata(argv) == 3, argv
        err = capsys.readouterr().err
        assert f"{tmp_path}/langid/stats.json: {said}" in err and "re-run it with --force" in err, (argv, err)


def test_report_names_a_count_missing_from_stats_json(tmp_path, capsys):
    """inspect needs only the drops; the report's tables need every stage's in, kept, dropped and errors."""
    finish(tmp_path, "ingest")
    (finish(tmp_path, "langid") / "stats.json").write_text(json.dumps({"stage": "langid", "in": {"docs": 3, "bytes": 30},
                                                                        "kept": {"docs": 3, "bytes": 30}}))
    assert glmdata(["inspect", str(tmp_path)]) == 0
    capsys.readouterr()
    assert glmdata(["report", str(tmp_path)]) == 3
    assert (f"{tmp_path}/langid/stats.json: dropped is missing, expected {{reason: {{\"docs\": n, \"bytes\": n}}}}; "
            "errors is missing") in capsys.readouterr().err


def test_report_says_which_stages_have_not_finished(tmp_path, capsys):
    """A stage that failed after its stats.json, and one still running (a folder, no stats.json yet): the
    report of the stages so far says so, in the terminal and on the page, instead of looking complete."""
    finish(tmp_path, "ingest")
    (finish(tmp_path, "langid") / "_SUCCESS").unlink()
    (tmp_path / "quality" / "data").mkdir(parents=True)
    assert glmdata(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    said = "finished (no _SUCCESS: running, failed or half copied): langid, quality"
    assert said in " ".join(capsys.readouterr().out.split())
    assert said in (tmp_path / "out" / "report.html").read_text()


def test_inspect_a_folder_that_is_no_stage(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "parts" / "part-00000.parquet").parent.mkdir()
    (tmp_path / "parts" / "part-00000.parquet").write_bytes(b"")
    for folder in ("empty", "parts"):
        assert glmdata(["inspect", str(tmp_path / folder)]) == 2
        assert "no stage output here (no stats.json)" in capsys.readouterr().err


def test_inspect_an_unfinished_stage(tmp_path, capsys):
    (tmp_path / "quality" / "data").mkdir(parents=True)
    assert glmdata(["inspect", str(tmp_path / "quality")]) == 1
    assert "quality has not finished (no _SUCCESS)" in capsys.readouterr().out


def test_inspect_a_workdir_before_and_while_its_stages_run(tmp_path, capsys):
    (tmp_path / ".tmp" / "ingest-abc").mkdir(parents=True)
    (tmp_path / "_LOCK").write_text(json.dumps({"run_id": "abc", "host": "h", "pid": 1}))
    assert glmdata(["inspect", str(tmp_path)]) == 1
    assert "no stage has finished yet; run abc holds the workdir" in capsys.readouterr().out
    finish(tmp_path, "ingest")
    (tmp_path / "langid" / "data").mkdir(parents=True)
    assert glmdata(["inspect", str(tmp_path)]) == 0
    assert "not finished (no _SUCCESS: running, failed or half copied): langid" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["-r", "too_short", "-n", "0"], ["-r", "too_short", "-n", "-2"],
                                   ["-r", "too_short", "--width", "-1"], ["--errors", "-r", "too_short"]])
def test_inspect_refuses_bad_counts_and_two_views(tmp_path, capsys, flags):
    finish(tmp_path, "quality", dropped={"too_short": {"docs": 1, "bytes": 10}})
    with pytest.raises(SystemExit) as exit_:
        glmdata(["inspect", str(tmp_path / "quality"), *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "expected an integer >=" in err or "not allowed with argument --errors" in err


def test_report_refuses_a_folder_with_no_finished_stage(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    finish(tmp_path / "run", "ingest")
    for argv in (["report", str(tmp_path / "empty")],
                 ["report", str(tmp_path / "run"), "--compare", str(tmp_path / "empty")]):
        assert glmdata(argv) == 2
        assert f"{tmp_path}/empty has no finished stage" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report").exists() and not (tmp_path / "run" / "report").exists()


def finish_flow(workdir: Path, quality_config: str) -> None:
    """ingest, quality, pii, dedup, each recording what it read; pii and dedup built from quality config q1,
    quality finished last."""
    finish(workdir, "ingest", "2026-01-01T10:00:00Z")
    finish(workdir, "quality", "2026-01-01T11:00:00Z", quality_config, inputs={"ingest": "c:f"})
    finish(workdir, "pii", "2026-01-01T10:20:00Z", inputs={"quality": "q1:f"})
    finish(workdir, "dedup", "2026-01-01T10:30:00Z", inputs={"pii": "c:f"})


def test_stale_stages_are_marked_in_report_and_inspect(tmp_path, capsys):
    """quality re-ran with another config after pii: pii was built from the output it replaced, and
    dedup from pii's; a re-run of quality with the same config and input (--force) changed nothing."""
    finish_flow(tmp_path, "q2")
    for argv in (["report", str(tmp_path)], ["inspect", str(tmp_path)]):
        assert glmdata(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "pii (stale)" in out and "dedup (stale)" in out, argv
        assert "quality (stale)" not in out and "ingest (stale)" not in out, argv
        assert ("stale: pii, dedup built from an output of quality that has been replaced since; re-run from pii"
                in out), argv
    finish_flow(tmp_path, "q1")
    for argv in (["report", str(tmp_path)], ["inspect", str(tmp_path)]):
        assert glmdata(argv) == 0
        out = capsys.readouterr().out
        assert "(stale)" not in out and "stale:" not in out, argv


def test_export_refuses_an_unfinished_encode_and_a_missing_workdir(tmp_path, capsys):
    (tmp_path / "encode" / "data").mkdir(parents=True)
    (tmp_path / "encode" / "data" / "part-00000.parquet").write_bytes(b"")
    # exit 3 for a stage to run first (as every command says it), 2 for a folder that is not there
    for workdir, code, said in ((tmp_path, 3, f"error: {tmp_path}/encode has not finished (no _SUCCESS)"),
                                (tmp_path / "missing", 2, f"glmdata export megatron: error: {tmp_path}/missing: "
                                                          "no such workdir")):
        assert glmdata(["export", "megatron", "--workdir", str(workdir), "--out", str(tmp_path / "x")]) == code
        assert said in capsys.readouterr().err


def test_markers_written_before_inputs_are_judged_by_time(tmp_path):
    """A workdir from before `_SUCCESS` recorded its inputs, whose quality re-ran with new code: the old
    markers after it are stale by their times; an upstream folder deleted since is not judged."""
    from pipeline.report import stale_stages

    for stage, at in (("ingest", "10:00"), ("langid", "10:10"), ("pii", "10:20"), ("dedup", "10:30")):
        finish(tmp_path, stage, f"2026-01-01T{at}:00Z")
    finish(tmp_path, "quality", "2026-01-01T11:00:00Z", "q2", inputs={"langid": "c:f"})
    assert stale_stages(str(tmp_path)) == {"pii": "quality", "dedup": "quality"}
    shutil.rmtree(tmp_path / "langid")
    assert stale_stages(str(tmp_path)) == {"pii": "quality", "dedup": "quality"}


def test_export_warns_of_an_encode_built_with_a_replaced_tokenizer(tmp_path, caplog):
    finish(tmp_path, "mix")
    finish(tmp_path, "tokenizer", config_hash="t2", inputs={"mix": "c:f"})
    finish(tmp_path, "encode", inputs={"mix": "c:f", "tokenizer": "t1:f"})
    with caplog.at_level(logging.WARNING, logger="pipeline.export_megatron"):
        check_encoded(str(tmp_path))
    assert "encode is stale: it was built from an output of tokenizer that has been replaced since" in caplog.text


def test_piped_inspect_keeps_reasons_and_error_offsets_whole(tmp_path, capsys):
    """What the user copies into -r, and where an error is, survive output that is not a terminal."""
    reasons = {"zh_gopher_repetition:top_4gram": {"docs": 1, "bytes": 10},
               "tokenizer_not_sampled_longer": {"docs": 2, "bytes": 10}}
    finish(tmp_path, "decontaminate", dropped=reasons)
    assert glmdata(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(reason in out for reason in reasons)
    source = "gs://a-bucket/crawl/segments/" + "x" * 60 + ".warc.gz"
    writer = UnitWriter(str(tmp_path / "ingest"), "ingest", 0)
    writer.error(source, 123456, "truncated_gzip", "EOFError: compressed file ended", 300)
    writer.close()
    assert glmdata(["inspect", str(tmp_path / "ingest"), "--errors"]) == 0
    assert f"{source} @ offset 123456" in capsys.readouterr().out


def test_report_waits_for_the_run_that_holds_the_workdir_or_writes_elsewhere(tmp_path, capsys):
    """A live run's lease: the report does not write into its workdir (the run writes its own at the end);
    --out writes the stages finished so far elsewhere; once the lease is gone the report takes it and
    gives it back."""
    import os
    import socket
    import time

    finish(tmp_path, "ingest")
    lease = json.dumps({"run_id": "live", "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                        "heartbeat": time.time()})
    (tmp_path / "_LOCK").write_text(lease)
    assert glmdata(["report", str(tmp_path)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path} is in use by run live" in err and f"glmdata report {tmp_path} --out DIR" in err
    assert not (tmp_path / "report").exists() and (tmp_path / "_LOCK").read_text() == lease
    assert glmdata(["report", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "report.html").exists() and not (tmp_path / "report").exists()
    (tmp_path / "_LOCK").unlink()
    assert glmdata(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "report.html").exists() and not (tmp_path / "_LOCK").exists()


def test_a_stats_json_without_its_stage_name_is_named_in_a_listing(tmp_path, capsys):
    """A workdir's listing and report name each stage by its stats.json's `stage`: missing, the file is named
    (was a KeyError); one stage's own folder needs no name."""
    finish(tmp_path, "ingest")
    stats = finish(tmp_path, "langid") / "stats.json"
    stats.write_text(json.dumps({k: v for k, v in json.loads(stats.read_text()).items() if k != "stage"}))
    for argv in (["inspect", str(tmp_path)], ["report", str(tmp_path)]):
        assert glmdata(argv) == 3, argv
        assert f"{tmp_path}/langid/stats.json: stage is missing, expected the stage's name" in capsys.readouterr().err
    assert glmdata(["inspect", str(tmp_path / "langid")]) == 0
