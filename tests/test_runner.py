"""The stage runner: output contract, conservation, skip on re-run, atomic commit, both engines."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import runner, storage
from pipeline.config import InputPath, register_section
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import BatchResult, MapStage, Stage, StageStats
from pipeline.runner import (LOCK, STALE_SECONDS, WorkdirBusy, WorkdirLease, is_finished, marker_key, read_success,
                             run_stage)

from conftest import make_run_config
from test_command_arguments import LocalEngine
from test_s3 import BUCKET, s3_endpoint  # noqa: F401  (the moto server fixture)


@register_section("toy_source")
@dataclass
class ToySourceSection:
    n_files: int = 3
    docs_per_file: int = 50


@register_section("toy_filter")
@dataclass
class ToyFilterSection:
    min_length: int = 10
    explode_on: str = "BOOM"
    word_list: InputPath | None = None  # read by nothing: checks that named files are inputs


class ToySource(Stage):
    name = "toy_source"

    def units(self, stage_run):
        return [f"file-{i}" for i in range(self.section.n_files)]

    def process_unit(self, index, unit, out):
        rows = []
        for j in range(self.section.docs_per_file):
            text = ("x" * (j % 20)) + ("BOOM" if j == 7 else "")
            rows.append({"id": f"{unit}:{j}", "text": text, "source": "toy", "source_file": unit, "source_offset": j})
        out.consumed(len(rows), sum(len(r["text"]) for r in rows))
        out.keep(pa.Table.from_pylist(rows, DOC_SCHEMA), sum(len(r["text"]) for r in rows))


class ToyFilter(MapStage):
    name = "toy_filter"
    upstream = "toy_source"
    batch_size = 16

    def process_batch(self, batch):
        texts = batch.column("text").to_pylist()
        if any(self.section.explode_on in t for t in texts):
            if len(texts) == 1:
                raise ValueError("cannot read this one")
        reasons = [None if len(t) >= self.section.min_length else "too_short" for t in texts]
        if len(texts) > 1 and any(self.section.explode_on in t for t in texts):
            raise ValueError("batch contains a bad row")
        return BatchResult(batch, reasons)


def _rows(stage_dir, sub="data"):
    files = storage.expand(f"{stage_dir}/{sub}")
    return sorted(r["id"] for f in files if f.endswith(".parquet") for r in pq.read_table(f).to_pylist())


@pytest.mark.parametrize("engine_name", ["spark", "beam"])
def test_contract_conservation_and_skip(tmp_path, engines, engine_name):
    cfg = make_run_config(tmp_path, {"toy_source": {}, "toy_filter": {"min_length": 10}})
    engine = engines[engine_name]
    src = run_stage(ToySource(cfg), engine)
    assert src["kept"]["docs"] == 150
    summary = run_stage(ToyFilter(cfg), engine)
    out = f"{cfg.run.workdir}/toy_filter"
    stats = json.loads(open(f"{out}/stats.json").read())
    StageStats.from_dict(stats).check_conservation("toy")
    assert stats["in"]["docs"] == 150
    assert stats["errors"]["exception"]["docs"] == 3  # the BOOM row of each file, isolated
    assert stats["dropped"]["too_short"]["docs"] == 3 * 30 - 3 + 0  # lengths 0..9 except the BOOM row (7)
    assert len(_rows(out)) == stats["kept"]["docs"]
    assert len(_rows(out, "rejected/too_short")) == stats["dropped"]["too_short"]["docs"]
    errors = pq.read_table(storage.expand(f"{out}/errors")[0]).to_pylist()
    assert errors[0]["source_file"].startswith("file-") and errors[0]["source_offset"] == 7
    assert is_finished(ToyFilter(cfg))
    again = run_stage(ToyFilter(cfg), engine)
    assert again.get("skipped")
    assert summary["kept"] == again["kept"]


def test_changed_config_reruns_downstream(tmp_path, spark_session_engine):
    """...and the downstream's _SUCCESS names the upstream output it read, which a re-run of the same
    config and input keeps (report and inspect mark stale stages by it)."""
    cfg = make_run_config(tmp_path, {"toy_source": {}, "toy_filter": {}})
    run_stage(ToySource(cfg), spark_session_engine)
    run_stage(ToyFilter(cfg), spark_session_engine)
    source, filtered = (storage.join(cfg.run.workdir, n) for n in ("toy_source", "toy_filter"))
    assert read_success(filtered)["inputs"] == {"toy_source": marker_key(read_success(source))}
    run_stage(ToySource(cfg), spark_session_engine, force=True)
    assert read_success(filtered)["inputs"] == {"toy_source": marker_key(read_success(source))}
    cfg2 = make_run_config(tmp_path, {"toy_source": {"docs_per_file": 40}, "toy_filter": {}})
    assert not is_finished(ToySource(cfg2))
    run_stage(ToySource(cfg2), spark_session_engine)
    assert read_success(filtered)["inputs"] != {"toy_source": marker_key(read_success(source))}
    assert not is_finished(ToyFilter(cfg2)), "downstream must re-run when its upstream changed"
    assert run_stage(ToyFilter(cfg2), spark_session_engine)["in"]["docs"] == 120


def test_a_new_output_version_reruns_the_stage_and_downstream(tmp_path, spark_session_engine, monkeypatch):
    cfg = make_run_config(tmp_path, {"toy_source": {}, "toy_filter": {}})
    run_stage(ToySource(cfg), spark_session_engine)
    run_stage(ToyFilter(cfg), spark_session_engine)
    assert is_finished(ToySource(cfg)) and is_finished(ToyFilter(cfg))
    monkeypatch.setattr(ToySource, "output_version", 2)  # code that writes other output for the same config
    assert not is_finished(ToySource(cfg)), "a stage finished by older code must re-run"
    assert not run_stage(ToySource(cfg), spark_session_engine).get("skipped")
    assert not is_finished(ToyFilter(cfg)), "and every stage after it"


def test_workdirs_finished_before_the_id_change_rerun_ingest(tmp_path, monkeypatch):
    from pipeline.stages.ingest import IngestStage

    cfg = make_run_config(tmp_path, {"ingest": {"sources": [{"name": "web", "format": "wet", "paths": ["x.wet.gz"]}]}})
    today = IngestStage(cfg).config_hash()
    monkeypatch.setattr(IngestStage, "output_version", 1)  # the hash ingest's _SUCCESS held before 7792272
    assert IngestStage(cfg).config_hash() != today


def test_edited_input_file_reruns_the_stage(tmp_path, spark_session_engine):
    words = tmp_path / "words.txt"
    words.write_text("casino\n")
    cfg = make_run_config(tmp_path, {"toy_source": {}, "toy_filter": {"word_list": str(words)}})
    run_stage(ToySource(cfg), spark_session_engine)
    run_stage(ToyFilter(cfg), spark_session_engine)
    assert is_finished(ToyFilter(cfg))
    words.write_text("casino\nlottery\n")
    assert not is_finished(ToyFilter(cfg)), "a stage must re-run when a file its section names changed"


def test_quality_fingerprints_its_word_lists(tmp_path):
    from pipeline.stages.quality import QualityStage

    blocklist = tmp_path / "blocked.txt"
    blocklist.write_text("example.invalid\n")
    cfg = make_run_config(tmp_path, {"quality": {"url_blocklists": [str(blocklist)]}})
    paths = QualityStage(cfg).input_paths()
    assert str(blocklist) in paths
    assert any(p.endswith("word_blocklist.txt") for p in paths) and any(p.endswith("zh_spam_terms.txt") for p in paths)
    # each file once, though the defaults name url_soft_banned_words.txt twice and a source's entry repeats every list
    cfg = make_run_config(tmp_path / "b", {"quality": {"sources": {"books": {"word_blocklist_min_hits": 3}}}})
    paths = QualityStage(cfg).input_paths()
    assert len(paths) == len(set(paths)) and sum(p.endswith("url_soft_banned_words.txt") for p in paths) == 1


def test_spark_and_beam_write_the_same_rows(tmp_path, engines):
    outputs = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / name, {"toy_source": {}, "toy_filter": {}})
        run_stage(ToySource(cfg), engine)
        run_stage(ToyFilter(cfg), engine)
        outputs[name] = _rows(f"{cfg.run.workdir}/toy_filter")
    assert outputs["spark"] == outputs["beam"]


def worker_gc_state(unit: int) -> dict:
    import gc
    import os

    return {"unit": unit, "pid": os.getpid(), "at": time.monotonic(), "frozen": gc.get_freeze_count()}


def test_spark_workers_freeze_what_outlives_their_first_unit(spark_session_engine):
    """PySpark runs gc.collect() after every task of a reused worker: what a worker keeps after its
    first unit (imports, models) is frozen out of it (pipeline.engines.spark.run_unit)."""
    results = spark_session_engine.map_units("gc", worker_gc_state, list(range(8)))
    assert [r["unit"] for r in results] == list(range(8))
    later = [r for pid in {r["pid"] for r in results}
             for r in sorted((r for r in results if r["pid"] == pid), key=lambda r: r["at"])[1:]]
    assert later and all(r["frozen"] > 0 for r in later)


def test_cli_says_which_stage_to_run_first(tmp_path, capsys):
    from pipeline.cli import main

    cfg = make_run_config(tmp_path, {"quality": {}})
    assert main(["quality", "--config", cfg.path]) == 3
    err = capsys.readouterr().err
    assert "error: stage 'quality' reads" in err and "glmdata langid" in err and "Traceback" not in err


# -- one writer per workdir


def _beam(tmp_path):
    from pipeline.engines.beam import BeamEngine

    return BeamEngine(make_run_config(tmp_path / "beamcfg", engine="beam"))


def test_a_second_run_on_a_live_workdir_is_refused(tmp_path):
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    other = WorkdirLease(cfg.run.workdir, run_id="otherrun")  # a live run (this process: alive)
    other.acquire()
    live_tmp = tmp_path / "out" / ".tmp" / "toy_source-otherrun"
    live_tmp.mkdir(parents=True)
    try:
        with pytest.raises(WorkdirBusy, match=r"workdir .* is in use by run otherrun \(host .*, pid \d+, .*last heartbeat"):
            run_stage(ToySource(cfg), _beam(tmp_path))
        assert live_tmp.is_dir(), "the live run's temporary folder must survive"
    finally:
        other.release()
    assert not (tmp_path / "out" / LOCK).exists()
    assert run_stage(ToySource(cfg), _beam(tmp_path))["kept"]["docs"] == 150
    assert not live_tmp.exists(), "once the lease is ours, other runs' folders are dead runs' leftovers"
    assert not (tmp_path / "out" / LOCK).exists(), "the lease is released after the run"


def test_a_dead_runs_lease_is_taken_over(tmp_path):
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK).write_text(json.dumps({"run_id": "killed", "host": socket.gethostname(), "pid": gone.pid,
                                                     "started": time.time(), "heartbeat": time.time()}))
    assert run_stage(ToySource(cfg), _beam(tmp_path))["kept"]["docs"] == 150
    # another host's lease counts as dead only after STALE_SECONDS without a heartbeat
    (tmp_path / "out" / LOCK).write_text(json.dumps({"run_id": "elsewhere", "host": "other-host", "pid": 1,
                                                     "started": 0, "heartbeat": time.time() - STALE_SECONDS + 60}))
    with pytest.raises(WorkdirBusy, match="elsewhere"):
        run_stage(ToySource(cfg), _beam(tmp_path), force=True)
    (tmp_path / "out" / LOCK).write_text(json.dumps({"run_id": "elsewhere", "host": "other-host", "pid": 1,
                                                     "started": 0, "heartbeat": time.time() - STALE_SECONDS - 60}))
    assert run_stage(ToySource(cfg), _beam(tmp_path), force=True)["kept"]["docs"] == 150


def test_the_cli_refuses_readably(tmp_path, capsys):
    from pipeline.cli import main

    cfg = make_run_config(tmp_path, {"toy_source": {}})
    other = WorkdirLease(cfg.run.workdir, run_id="otherrun")
    other.acquire()
    try:
        assert main(["ingest", "--config", cfg.path]) == 3
    finally:
        other.release()
    err = capsys.readouterr().err
    assert "is in use by run otherrun" in err and "Traceback" not in err


def test_the_lease_on_an_object_store(s3_endpoint):
    """No create-if-absent on S3: the lease is written, read back after SETTLE_SECONDS, and refused
    to a second run while its holder is alive."""
    workdir = f"s3://{BUCKET}/lease-test"
    first = WorkdirLease(workdir, run_id="first")
    first.acquire()
    try:
        with pytest.raises(WorkdirBusy, match="in use by run first"):
            WorkdirLease(workdir, run_id="second").acquire()
    finally:
        first.release()
    assert not storage.exists(f"{workdir}/{LOCK}")
    second = WorkdirLease(workdir, run_id="second")
    second.acquire()
    second.release()


# -- a run killed while it commits


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_run_killed_while_deleting_the_old_output_leaves_no_finished_looking_half(tmp_path, monkeypatch, store,
                                                                                     request):
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    if store == "s3":
        request.getfixturevalue("s3_endpoint")
        cfg.run.workdir = f"s3://{BUCKET}/killed-delete"
    run_stage(ToySource(cfg), _beam(tmp_path))
    real_rmtree = storage.rmtree

    def killed_after_the_data(uri):  # the old output's data/ is gone, then the run dies
        if uri.rstrip("/").endswith("/toy_source"):
            real_rmtree(storage.join(uri, "data"))
            raise KeyboardInterrupt
        real_rmtree(uri)

    monkeypatch.setattr(storage, "rmtree", killed_after_the_data)
    with pytest.raises(KeyboardInterrupt):
        run_stage(ToySource(cfg), _beam(tmp_path), force=True)
    monkeypatch.undo()
    assert not is_finished(ToySource(cfg)), "_SUCCESS outlived the data it vouched for"
    stats = run_stage(ToySource(cfg), _beam(tmp_path))
    assert not stats.get("skipped") and stats["kept"]["docs"] == 150
    assert len(_rows(storage.join(cfg.run.workdir, "toy_source"))) == 150


class InProcessEngine(LocalEngine):
    """Units mapped in this process: the commit tests below need no engine's start-up (Beam's: seconds)."""
    name = "in-process"


class FailsAtItsLastUnit(ToySource):
    def process_unit(self, index, unit, out):
        if index == self.section.n_files - 1:
            raise RuntimeError("the last unit fails")
        super().process_unit(index, unit, out)


@pytest.fixture
def quick_s3_lease(s3_endpoint, monkeypatch):
    """moto reads back what was just written: the lease's settling wait (1 s a run) is not under test here."""
    monkeypatch.setattr(runner, "SETTLE_SECONDS", 0.0)


def test_a_failed_rerun_on_s3_keeps_the_old_output(tmp_path, quick_s3_lease):
    """Object stores have no folder rename: the run writes under .tmp/ and copies its output into place
    once finished, so a run that fails partway leaves the old output finished and whole."""
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    cfg.run.workdir = f"s3://{BUCKET}/failed-rerun"
    run_stage(ToySource(cfg), InProcessEngine())
    with pytest.raises(RuntimeError, match="the last unit fails"):
        run_stage(FailsAtItsLastUnit(cfg), InProcessEngine(), force=True)
    assert is_finished(ToySource(cfg))
    assert len(_rows(storage.join(cfg.run.workdir, "toy_source"))) == 150


def test_a_run_killed_while_copying_its_output_into_place_is_committed_by_the_next(tmp_path, quick_s3_lease,
                                                                                   monkeypatch):
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    cfg.run.workdir = f"s3://{BUCKET}/killed-copy"
    real_copy_files = storage.copy_files

    def killed_after_the_data(src, dst, files):
        real_copy_files(src, dst, files)
        if any(name == "_SUCCESS" for name, _, _ in files):
            raise AssertionError("_SUCCESS was copied with the data")
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "copy_files", killed_after_the_data)
    with pytest.raises(KeyboardInterrupt):
        run_stage(ToySource(cfg), InProcessEngine())
    monkeypatch.setattr(storage, "copy_files", real_copy_files)
    assert not is_finished(ToySource(cfg)), "_SUCCESS came before the files it vouches for"
    stats = run_stage(FailsAtItsLastUnit(cfg), InProcessEngine())  # same config and input: not run again
    assert stats["kept"]["docs"] == 150 and is_finished(ToySource(cfg))
    assert len(_rows(storage.join(cfg.run.workdir, "toy_source"))) == 150
    assert storage.listdir(storage.join(cfg.run.workdir, ".tmp")) == []


class RecordingEngine(InProcessEngine):
    def __init__(self):
        self.calls = []

    def map_units(self, label, fn, units):
        self.calls.append((label, units))
        return super().map_units(label, fn, units)


def test_a_commit_on_s3_spreads_its_copies_over_the_engines_tasks(tmp_path, quick_s3_lease, monkeypatch):
    """One driver copying a TB-sized stage alone would take tens of minutes: the copies are the
    engine's units, as the writes were, and _SUCCESS is copied by none of them (it comes last)."""
    monkeypatch.setattr(runner, "COMMIT_FILES_PER_UNIT", 2)
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    cfg.run.workdir = f"s3://{BUCKET}/spread-commit"
    engine = RecordingEngine()
    run_stage(ToySource(cfg), engine)
    units = dict(engine.calls)["commit toy_source"]
    copied = sorted(name for unit in units for _, name, _ in unit)
    committed = sorted(name for name, _ in storage.tree(storage.join(cfg.run.workdir, "toy_source"))[1])
    assert copied == [name for name in committed if name != "_SUCCESS"] and len(copied) >= 4
    assert all(len(unit) <= 2 for unit in units)


def test_each_output_file_of_a_stage_on_s3_is_copied_once(tmp_path, quick_s3_lease, monkeypatch):
    """A rename on S3 is a copy: a unit's files stay under their temporary names until the commit
    copies each to its name, rather than being renamed in the run's folder and copied again."""
    cfg = make_run_config(tmp_path, {"toy_source": {}, "toy_filter": {"min_length": 10}})
    cfg.run.workdir = f"s3://{BUCKET}/copied-once"
    run_stage(ToySource(cfg), InProcessEngine())
    copies = []
    real_copy = storage._copy_file
    monkeypatch.setattr(storage, "_copy_file", lambda fs, src, dst, nbytes=None: copies.append((src, dst))
                        or real_copy(fs, src, dst, nbytes))
    stats = run_stage(ToyFilter(cfg), InProcessEngine())
    out = storage.join(cfg.run.workdir, "toy_filter")
    parts = [name for name, _ in storage.tree(out)[1] if name.endswith(".parquet")]
    assert len(parts) == 9 and sorted(name for name, _ in storage.tree(out)[1] if not name.endswith(".parquet")) == \
        ["_SUCCESS", "stats.json"]  # data, rejected/too_short and errors of each unit; no list, no temporary file
    assert sum(src.endswith(".parquet") or dst.endswith(".parquet") for src, dst in copies) == len(parts)
    assert len(_rows(out)) == stats["kept"]["docs"] == 150 - 90 and len(_rows(out, "rejected/too_short")) == 87
    assert storage.listdir(storage.join(cfg.run.workdir, ".tmp")) == []


def test_the_commit_copies_the_files_a_unit_listed_and_not_a_failed_attempts(tmp_path):
    run_dir = tmp_path / ".tmp" / "stage-run"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / ".part-00000.parquet.inprogress-aaa").write_bytes(b"finished attempt")
    (run_dir / "data" / ".part-00000.parquet.inprogress-bbb").write_bytes(b"failed")
    (run_dir / "_pending").mkdir()
    (run_dir / "_pending" / "part-00000.parquet.json").write_text(json.dumps(
        {"data/part-00000.parquet": "data/.part-00000.parquet.inprogress-aaa"}))
    (run_dir / "stats.json").write_text("{}")
    (run_dir / "_SUCCESS").write_text("{}")
    assert runner._copies(str(run_dir), storage.tree(str(run_dir))[1]) == [
        ("_SUCCESS", "_SUCCESS", 2), ("data/.part-00000.parquet.inprogress-aaa", "data/part-00000.parquet", 16),
        ("stats.json", "stats.json", 2)]


def test_a_run_whose_lease_was_taken_over_does_not_commit(tmp_path):
    cfg = make_run_config(tmp_path, {"toy_source": {}})
    run_stage(ToySource(cfg), _beam(tmp_path))
    marker = tmp_path / "out" / "toy_source" / "_SUCCESS"
    committed = marker.stat().st_mtime_ns

    class PausedPastItsLease(ToySource):
        def execute(self, stage_run):  # meanwhile another run took the stale lease over
            stats = super().execute(stage_run)
            (tmp_path / "out" / LOCK).write_text(json.dumps({"run_id": "newholder", "host": socket.gethostname(),
                                                             "pid": 1, "started": 0, "heartbeat": time.time()}))
            return stats

    with pytest.raises(WorkdirBusy, match="run newholder took over the lease"):
        run_stage(PausedPastItsLease(cfg), _beam(tmp_path), force=True)
    assert marker.stat().st_mtime_ns == committed, "the new holder's output was replaced"
    assert (tmp_path / "out" / LOCK).exists(), "the new holder's lease was released by the run it replaced"


def later_units_finish_first(unit: int) -> dict:
    time.sleep(0.02 * (12 - unit))
    return {"unit": unit}


@pytest.mark.parametrize("engine_name", ["spark", "beam"])
def test_map_units_returns_results_in_unit_order_whatever_finishes_first(engines, engine_name):
    results = engines[engine_name].map_units("order", later_units_finish_first, list(range(12)))
    assert [r["unit"] for r in results] == list(range(12))


def test_a_lease_being_written_is_not_taken_for_a_dead_runs(tmp_path, monkeypatch):
    workdir = str(tmp_path / "wd")
    first, second = WorkdirLease(workdir, run_id="first"), WorkdirLease(workdir, run_id="second")
    outcome = {}
    real_content = WorkdirLease._content

    def second_run_starts_meanwhile(lease):  # while the first run writes its lease
        if lease is first and "second" not in outcome:
            outcome["second"] = "refused"
            second.acquire()
            outcome["second"] = "acquired"
        return real_content(lease)

    monkeypatch.setattr(WorkdirLease, "_content", second_run_starts_meanwhile)
    try:
        with pytest.raises(WorkdirBusy):
            first.acquire()
            outcome["first"] = "acquired"
    finally:
        first.release()
        second.release()
    assert outcome == {"second": "acquired"}, "both runs hold the workdir"
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == []


def test_a_lease_on_a_file_system_without_hard_links_is_created_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")  # exFAT, some FUSE mounts

    monkeypatch.setattr(os, "link", no_links)
    workdir = str(tmp_path / "wd")
    first, second = WorkdirLease(workdir, run_id="first"), WorkdirLease(workdir, run_id="second")
    first.acquire()
    try:
        assert json.loads((tmp_path / "wd" / "_LOCK").read_text())["run_id"] == "first"
        with pytest.raises(WorkdirBusy):
            second.acquire()
    finally:
        first.release()
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == []
