"""Remote storage: the S3-compatible endpoint (moto's server on 127.0.0.1) the S3 tests share, reached
by the driver and by Spark's Python workers through pyarrow.fs with the standard AWS_ENDPOINT_URL
variable (no Hadoop s3a), and checks of models and URIs there. A whole pipeline on S3 (every stage and
the report, equal to a run with a local workdir) is tests/test_rehearsal.py's."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.stages import load_config

from conftest import make_run_config

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
