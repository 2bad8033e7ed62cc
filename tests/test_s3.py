"""Remote storage: inputs, stage outputs and a model file on an S3-compatible endpoint (moto's
server on 127.0.0.1), reached by the driver and by Spark's Python workers through pyarrow.fs with the
standard AWS_ENDPOINT_URL variable (no Hadoop s3a). The output equals a local run's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e_toys import output_digest
from filters.langid import default_model_path
from pipeline import storage
from pipeline.config import load_config
from pipeline.run_all import run_pipeline

from conftest import REPO, make_run_config
from demo_runs import DEMO, demo_sources

STAGES = ["ingest", "langid"]
BUCKET = "glmdata-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _upload_tree(local: Path, uri: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{uri}/{path.relative_to(local).as_posix()}", path.read_bytes())


def _config(path: Path, corpus: str, workdir: str, model: str | None) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["ingest"]["sources"] = demo_sources(corpus)
    raw["langid"]["model"] = model
    cfg = {"run": {"workdir": workdir, "engine": "spark", "spark": {"master": "local[2]"}},
           **{k: raw[k] for k in STAGES}}
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def test_pipeline_on_s3_matches_local(tmp_path, s3_endpoint, spark_session_engine):
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, "-m", "pipeline.demo_corpus", "--out", str(corpus)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    _upload_tree(corpus, f"s3://{BUCKET}/corpus")
    storage.write_bytes(f"s3://{BUCKET}/models/lid.176.ftz", Path(default_model_path()).read_bytes())
    s3_cfg = _config(tmp_path / "s3.yaml", f"s3://{BUCKET}/corpus", f"s3://{BUCKET}/work",
                     f"s3://{BUCKET}/models/lid.176.ftz")
    # A fresh process, so Spark's Python workers inherit the endpoint and credentials.
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(s3_cfg), "--until", "langid"],
                         cwd=REPO, env={**os.environ, **s3_endpoint, "GLMDATA_CACHE": str(tmp_path / "cache")},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert storage.exists(f"s3://{BUCKET}/work/langid/_SUCCESS")
    assert storage.exists(f"s3://{BUCKET}/work/report/report.html")
    assert list((tmp_path / "cache").rglob("*.ftz")), "workers fetched the language-ID model from S3"

    local_cfg = load_config(_config(tmp_path / "local.yaml", str(corpus), str(tmp_path / "local"), None))
    run_pipeline(local_cfg, spark_session_engine, order=STAGES, report=False)
    on_s3 = output_digest(f"s3://{BUCKET}/work", STAGES)
    local = output_digest(tmp_path / "local", STAGES)
    # The rows are the same; only where a document came from (the input URI) differs.
    assert sorted(k for k in on_s3) == sorted(k for k in local)
    assert _rows(f"s3://{BUCKET}/work") == _rows(str(tmp_path / "local"))


def _rows(workdir: str) -> list[tuple]:
    import pyarrow.parquet as pq

    out = []
    for path in storage.expand(storage.join(workdir, "langid", "data")):
        table = pq.read_table(storage.open_input(path), columns=["id", "text", "lang", "source", "source_offset"])
        out += [tuple(r.values()) for r in table.to_pylist()]
    return sorted(out)


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
