"""Shared fixtures: the real data in ../shared/data, and one Spark engine per test session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Spark's Python workers must import test modules that define stages (they are pickled by reference).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")] if p)

SHARED_DATA = Path(os.environ.get("GLMDATA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def contained_temp_files(tmp_path_factory):
    """Temporary files of the tests and of every process they start (Python's tempfile: Beam, torch,
    the trainer, `glmdata` subprocesses; the local Spark engine's block managers) go under pytest's base
    folder, which pytest removes after a passing run (tmp_path_retention_policy): tests that kill a run
    on purpose leave nothing in /tmp."""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        # SPARK_LOCAL_DIRS: the local engine's spark.local.dir (block managers), which ignores TMPDIR
        for name in ("TMPDIR", "SPARK_LOCAL_DIRS"):
            patch.setenv(name, str(folder))
        patch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
        yield folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; in CI (CI=true) its absence is a failure, elsewhere a skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared data is missing at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_run_config(workdir: Path, sections: dict | None = None, engine: str = "spark", **run):
    """A RunConfig for tests, written as a real YAML file so validation runs."""
    import yaml

    from pipeline.stages import load_config

    cfg_path = workdir / "config.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    data = {"run": {"workdir": str(workdir / "out"), "engine": engine, "spark": {"master": "local[2]"}, **run}}
    data.update(sections or {})
    cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_config(cfg_path)


@pytest.fixture(scope="session")
def spark_session_engine(tmp_path_factory):
    """One local Spark session for the whole test run (starting one costs ~9 s)."""
    from pipeline.engines.spark import SparkEngine

    cfg = make_run_config(tmp_path_factory.mktemp("spark"))
    engine = SparkEngine(cfg)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def demo_reference(tmp_path_factory, spark_session_engine):
    """configs/demo.yaml run once, uninterrupted, in this session's Spark engine (demo_runs.ReferenceRun):
    what the resume, cluster and demo report tests compare with (~20 s a run). It runs in the background,
    beside what the first test using it runs itself, and waits only when that test compares."""
    from concurrent.futures import ThreadPoolExecutor

    from demo_runs import start_reference_run

    with ThreadPoolExecutor(1) as pool:
        yield start_reference_run(pool, tmp_path_factory.mktemp("demo-reference"), spark_session_engine)


@pytest.fixture
def engines(spark_session_engine, tmp_path):
    """Both engines, for parity tests: {'spark': ..., 'beam': ...}."""
    from pipeline.engines.beam import BeamEngine

    cfg = make_run_config(tmp_path / "beamcfg", engine="beam")
    return {"spark": spark_session_engine, "beam": BeamEngine(cfg)}


def write_finished_stage(workdir, stage: str, docs: list[dict], files: int = 2, schema=None) -> None:
    """Fake a finished upstream stage, as the runner expects it: data/ parts (round-robin) + _SUCCESS.
    Columns beyond the schema (default DOC_SCHEMA) are typed from the first document: float32 or int64."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.schema import DOC_SCHEMA

    schema = schema or DOC_SCHEMA
    extra = [pa.field(k, pa.float32() if isinstance(v, float) else pa.int64())
             for k, v in (docs[0].items() if docs else []) if k not in schema.names]
    schema = pa.schema(list(schema) + extra)
    up = Path(workdir) / stage
    (up / "data").mkdir(parents=True)
    for k in range(files):
        pq.write_table(pa.Table.from_pylist(docs[k::files], schema), up / "data" / f"part-{k:05d}.parquet")
    (up / "_SUCCESS").write_text(json.dumps({"config_hash": f"test-{len(docs)}-{files}", "input_fingerprint": "test"}))
