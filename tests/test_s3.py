"""Remote storage: inputs, every stage's output, the report and a model file on an S3-compatible
endpoint (moto's server on 127.0.0.1), reached by the driver and by Spark's Python workers through
pyarrow.fs with the standard AWS_ENDPOINT_URL variable (no Hadoop s3a). The output equals a local run's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from filters.langid import default_model_path
from pipeline import storage
from pipeline.config import ConfigError
from pipeline.stages import load_config
from pipeline.demo_corpus import generate
from pipeline.run_all import pipeline_stages
from pipeline.stages import import_all

from conftest import REPO, make_run_config
from demo_runs import DEMO, QUICK_JVM, demo_sources

BUCKET = "glmdata-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    import boto3

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
        yield env
    server.stop()


def upload_tree(local: Path, uri: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{uri}/{path.relative_to(local).as_posix()}", path.read_bytes())


def _overrides(corpus: str, workdir: str, model: str | None) -> dict:
    """configs/demo.yaml with its inputs, workdir and language-ID model moved (QUICK_JVM: short runs)."""
    spark = yaml.safe_load(DEMO.read_text())["run"]["spark"]
    return {"run.workdir": workdir, "ingest.sources": demo_sources(corpus), "langid.model": model,
            "run.spark.conf": {**spark.get("conf", {}), **QUICK_JVM}}


@pytest.mark.slow
def test_pipeline_on_s3_matches_local(tmp_path, s3_endpoint):
    """Every stage and the report with the workdir on S3 (dedup's checkpoints included, which go
    through the storage layer, not Hadoop's filesystems), equal to a run with a local workdir on the
    same inputs (corpus and language-ID model on S3 for both: a document's id derives from its
    source file's URI, so both runs must read the same URIs). Two demo runs, side by side."""
    import_all()
    stages = pipeline_stages()
    corpus = tmp_path / "corpus"
    generate(corpus)
    upload_tree(corpus, f"s3://{BUCKET}/corpus")
    storage.write_bytes(f"s3://{BUCKET}/models/lid.176.ftz", Path(default_model_path()).read_bytes())
    workdirs = {"s3": f"s3://{BUCKET}/work", "local": str(tmp_path / "local")}
    # Both runs side by side (each waits much of its time on Spark's scheduling), each a fresh process,
    # so Spark's Python workers inherit the endpoint and credentials; a log file each, not a pipe, which
    # would stall a run while the other is waited on.
    runs = {}
    try:
        for name, workdir in workdirs.items():
            settings = _overrides(f"s3://{BUCKET}/corpus", workdir, f"s3://{BUCKET}/models/lid.176.ftz")
            with open(tmp_path / f"{name}.log", "wb") as log:
                runs[name] = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.cli", "run", "--config", str(DEMO),
                     *[a for k, v in settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]],
                    cwd=REPO, env={**os.environ, **s3_endpoint, "GLMDATA_CACHE": str(tmp_path / f"cache-{name}")},
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for name, workdir in workdirs.items():
            returncode = runs[name].wait(timeout=600)
            output = (tmp_path / f"{name}.log").read_text(errors="replace")
            first_errors = [line for line in output.splitlines() if "Error" in line or "Exception" in line][:5]
            assert returncode == 0, f"{name}:\n" + "\n".join(first_errors) + "\n...\n" + output[-3000:]
            assert list((tmp_path / f"cache-{name}").rglob("*.ftz")), "workers fetched the language-ID model from S3"
            assert all(storage.exists(storage.join(workdir, s, "_SUCCESS")) for s in stages), name
            assert storage.exists(storage.join(workdir, "report", "report.html")), name
    finally:
        for run in runs.values():
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)

    for stage in stages:
        assert _rows(workdirs["s3"], stage) == _rows(workdirs["local"], stage), stage
    assert _rows(workdirs["local"], "dedup"), "the runs kept documents"
    assert storage.read_bytes(storage.join(workdirs["s3"], "tokenizer", "tokenizer.model")) == \
        storage.read_bytes(storage.join(workdirs["local"], "tokenizer", "tokenizer.model"))
    assert _shards(workdirs["s3"]) == _shards(workdirs["local"])


def _rows(workdir: str, stage: str) -> list[str]:
    """A stage's kept rows (its data/ Parquet files), sorted."""
    import pyarrow.parquet as pq

    out = []
    for path in storage.expand(storage.join(workdir, stage, "data")):
        if path.endswith(".parquet"):
            out += [json.dumps(row, sort_keys=True, ensure_ascii=False, default=repr)
                    for row in pq.read_table(storage.open_input(path)).to_pylist()]
    return sorted(out)


def _shards(workdir: str) -> list[tuple[str, str]]:
    manifest = json.loads(storage.read_text(storage.join(workdir, "shards", "manifest.json")))
    return [(s["file"], s["sha256"]) for s in manifest["shards"]]


def test_quality_classifier_from_s3(tmp_path, s3_endpoint, monkeypatch):
    """A classifier model on S3 is fetched once per worker and scores exactly as the local file does."""
    from filters.classifier import quality_score, train
    from pipeline.stages.quality import QualityStage

    good = [f"The committee published its annual report on public libraries in region {i}, with figures "
            "on lending, opening hours and staff." for i in range(60)]
    bad = [f"BUY NOW cheap pills casino bonus click here win money {i} free free free" for i in range(60)]
    model = tmp_path / "quality.bin"
    train(good, bad, str(model), bucket=20_000)
    storage.write_bytes(f"s3://{BUCKET}/models/quality.bin", model.read_bytes())
    monkeypatch.setenv("GLMDATA_CACHE", str(tmp_path / "cache"))
    try:
        cfg = make_run_config(tmp_path / "run", {"quality": {"classifier": f"s3://{BUCKET}/models/quality.bin"}})
        stage = QualityStage(cfg)
        assert stage.input_paths()[-1] == f"s3://{BUCKET}/models/quality.bin"  # replacing the model re-runs
        assert stage.classifier_path.startswith(str(tmp_path / "cache"))
        text = "\n".join(good[:8])
        assert stage.score(text, {}) == quality_score(str(model), text) > 0.5
    finally:
        storage._cached_copy.cache_clear()


@pytest.mark.parametrize("key,value", [("ingest.sources", [{"name": "cc", "format": "wet", "paths": [
    "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/segments/x/wet/y.warc.wet.gz"]}]),
    ("langid.model", "http://models.example/lid.176.ftz"), ("run.workdir", "https://example.org/work")])
def test_http_urls_are_rejected_by_config_validation(tmp_path, key, value):
    """http(s) cannot be listed, globbed or written: the config says so at load time, naming file and key."""
    cfg = make_run_config(tmp_path / "ok")
    with pytest.raises(ConfigError) as err:
        load_config(cfg.path, {key: value})
    message = str(err.value)
    assert message.startswith(f"{cfg.path}: {key.replace('ingest.sources', 'ingest.sources[0].paths[0]')}"), message
    assert "s3://" in message and "gs://" in message, message
