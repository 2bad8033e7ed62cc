"""The real demo pipeline on Spark and on Beam, then `glmdata report` on each finished workdir: the
report starts no engine, and report.json's per-source and per-language figures (documents, text
bytes, tokens, drops per reason, tokens in the shards) equal counts taken from the stage outputs.
Both runs write the same shards manifest (the tokenizer path in it is relative). The Spark run is the
session's reference run (conftest.demo_reference), reported on in a copy of its workdir."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from pipeline.cli import main as glmdata
from pipeline.run_all import run_pipeline

from demo_runs import demo_config

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.beam]  # two demo runs
DOC_STAGES = ["ingest", "langid", "quality", "pii", "dedup", "decontaminate", "mix"]


def _rows(folder: Path, columns: list[str]) -> list[dict]:
    rows = []
    for path in sorted(folder.rglob("*.parquet")):
        schema = pq.read_schema(path)
        rows += pq.read_table(path, columns=[c for c in columns if c in schema.names]).to_pylist()
    return rows


def _expected(workdir: Path, key: str) -> dict:
    """{name: {"stages": {stage: [docs, text bytes, tokens]}, "dropped": {"stage: reason": docs}}} from the outputs."""
    out: dict[str, dict] = {}
    for stage in DOC_STAGES + ["encode"]:
        if not (workdir / stage).is_dir():
            continue
        for r in _rows(workdir / stage / "data", ["source", "lang", "text", "n_tokens"]):
            e = out.setdefault(r.get(key) or "?", {"stages": {}, "dropped": Counter()})
            v = e["stages"].setdefault(stage, [0, 0, 0])
            v[0] += 1
            v[1] += len((r.get("text") or "").encode())
            v[2] += r.get("n_tokens") or 0
        for r in _rows(workdir / stage / "rejected", ["source", "lang", "reject_reason"]):
            out.setdefault(r.get(key) or "?", {"stages": {}, "dropped": Counter()})["dropped"][
                f"{stage}: {r['reject_reason']}"] += 1
    return out


@pytest.mark.parametrize("engine_name", ["beam", "spark"])
def test_demo_report_equals_stage_outputs(engine_name, demo_reference, tmp_path_factory, monkeypatch):
    from pipeline.engines.beam import BeamEngine

    workdir = tmp_path_factory.mktemp(f"demo-{engine_name}") / "work"
    if engine_name == "spark":
        demo_reference.stages()  # waits for it
        shutil.copytree(demo_reference.workdir, workdir)
    else:
        cfg = demo_config(demo_reference.corpus, workdir, **{"run.engine": engine_name})
        run_pipeline(cfg, BeamEngine(cfg), report=False, console=Console(quiet=True))

    import pipeline.engines

    def refuse(*args, **kwargs):
        raise AssertionError("`glmdata report` on a finished workdir started an engine")

    monkeypatch.setattr(pipeline.engines, "make_engine", refuse)
    assert glmdata(["report", str(workdir)]) == 0
    data = json.loads((workdir / "report" / "report.json").read_text())
    manifest = json.loads((workdir / "shards" / "manifest.json").read_text())
    for by, key in (("sources", "source"), ("languages", "lang")):
        expected = _expected(workdir, key)
        assert set(data[by]) == set(expected), by
        for name, e in expected.items():
            got = data[by][name]
            assert got["stages"] == e["stages"], (by, name)
            assert {k: v[0] for k, v in got["dropped"].items()} == dict(e["dropped"]), (by, name)
    shard_languages = Counter()
    for shard in manifest["shards"]:
        shard_languages.update(shard["languages"])
    assert {lang: e["shard_tokens"] for lang, e in data["languages"].items() if e["shard_tokens"]} == dict(shard_languages)
    for name, e in _expected(workdir, "source").items():  # the stream the shards pack: tokens + one <eos> each
        assert data["sources"][name]["stream_tokens"] == e["stages"]["encode"][2] + e["stages"]["encode"][0]
    assert len(data["sources"]) >= 4 and {"en", "zh"} <= set(data["languages"])
    assert manifest["tokenizer"]["file"] == "../tokenizer/tokenizer.model"
    (tmp_path_factory.getbasetemp() / f"manifest-{engine_name}.json").write_bytes(
        (workdir / "shards" / "manifest.json").read_bytes())
    other = tmp_path_factory.getbasetemp() / f"manifest-{'spark' if engine_name == 'beam' else 'beam'}.json"
    if other.exists():  # the second of the two runs: the same manifest, byte for byte
        assert other.read_bytes() == (workdir / "shards" / "manifest.json").read_bytes()
