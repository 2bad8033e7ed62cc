"""Dress rehearsal of a managed-cluster run, failing where a cluster would (marked slow: about five
minutes, most of it the two pipeline runs on two cores).

* The artifacts are built for CPython FOREIGN_PYTHON (3.12), not the Python running the tests.
* The driver's environment is made from them alone: the node setup script (the Dataproc
  initialization action / EMR bootstrap action) installs the wheelhouse with `pip --no-index` into a
  venv of pyenv's bare 3.12, with no PYTHONPATH, no pip configuration, and the repo on no path.
* Spark is 3.5 (Dataproc 2.2/2.3, EMR 7), installed from the registry into build/ (kept between runs);
  its standalone master and worker run with PATH holding only the system and the bare 3.12, so the
  executors have nothing but the `--archives` environment's launcher and that interpreter.
* The job is submitted with exactly the command `glmdata submit --platform spark-standalone --dry-run`
  prints, run from that environment.
* Inputs (corpus, block lists, the language-ID model) are read from and every stage, dedup and its
  checkpoints included, plus the report is written to s3:// on a local moto server (AWS_ENDPOINT_URL);
  pyarrow's filesystems, no Hadoop s3a. This is also the test of a whole pipeline on S3 for Spark 4:
  the reference run reads the same s3:// inputs, the model fetched into each worker's cache.
* Every stage's committed output equals a Spark local-mode run of the same config (this checkout's
  venv, the same s3:// inputs, a local workdir), run meanwhile.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from filters.langid import default_model_path
from pipeline import storage
from pipeline.demo_corpus import generate
from pipeline.dist import ENV_ARCHIVE, NODE_SETUP, WHEELHOUSE
from pipeline.run_all import pipeline_stages
from pipeline.stages import import_all

from conftest import REPO
from demo_runs import DEMO, committed_output, demo_sources
from dist_artifacts import FOREIGN_PYTHON, foreign_dist, foreign_interpreter
from test_cluster import EXECUTOR_CONF, StandaloneCluster
from test_s3 import BUCKET, s3_endpoint, upload_tree  # noqa: F401  (s3_endpoint: the moto fixture)

pytestmark = [pytest.mark.slow, pytest.mark.spark]

PYSPARK_35 = "3.5.9"


@pytest.fixture(scope="module")
def spark35_home() -> Path:
    """pyspark 3.5 from the registry, installed once into build/ (gitignored) and reused."""
    target = REPO / "build" / f"pyspark-{PYSPARK_35}"
    if not (target / "pyspark" / "bin" / "spark-submit").exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(partial), f"pyspark=={PYSPARK_35}"],
                       check=True, env=env, timeout=900)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / "pyspark"


def bare_env(home: Path, python: str) -> dict[str, str]:
    """What a fresh node has: the system's tools, Java, and the target CPython; nothing of this checkout."""
    return {"PATH": f"{Path(python).parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull, "PYTHONNOUSERSITE": "1"}


def _inputs_on_s3(value):
    """configs/demo.yaml's relative file paths (block lists, ...) uploaded and replaced by s3:// URIs."""
    if isinstance(value, dict):
        return {k: _inputs_on_s3(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inputs_on_s3(v) for v in value]
    if isinstance(value, str) and value.startswith("../"):
        local = (DEMO.parent / value).resolve()
        if local.is_file():
            uri = f"s3://{BUCKET}/inputs/{local.relative_to(REPO).as_posix()}"
            storage.write_bytes(uri, local.read_bytes())
            return uri
    return value


def _configs(root: Path) -> tuple[Path, Path]:
    """The demo config reading everything from s3://: one writing to s3:// for the cluster, one
    writing to a local workdir for the local-mode reference."""
    corpus = root / "corpus"
    generate(corpus)
    upload_tree(corpus, f"s3://{BUCKET}/corpus")
    raw = yaml.safe_load(DEMO.read_text())
    raw["ingest"]["sources"] = demo_sources(f"s3://{BUCKET}/corpus")
    raw = _inputs_on_s3(raw)
    raw["langid"]["model"] = f"s3://{BUCKET}/models/lid.176.ftz"
    storage.write_bytes(raw["langid"]["model"], Path(default_model_path()).read_bytes())
    cluster = {**raw, "run": {**raw["run"], "workdir": f"s3://{BUCKET}/cluster",
                              "spark": {**raw["run"]["spark"], "conf": EXECUTOR_CONF}}}
    local = {**raw, "run": {**raw["run"], "workdir": str(root / "local")}}
    paths = root / "cluster.yaml", root / "local.yaml"
    for path, cfg in zip(paths, (cluster, local)):
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return paths


def _download(uri: str, local: Path) -> None:
    """The s3:// workdir as a local folder (every file, _SUCCESS included, which storage.expand
    leaves out), its own URI inside files replaced by the folder's path."""
    import pyarrow.fs as pafs

    fs, root = storage.filesystem(uri)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        key = f"s3://{info.path}"
        data = storage.read_bytes(key)
        if not key.endswith(".parquet"):
            data = data.replace(uri.encode(), str(local).encode())
        dest = local / key[len(uri) + 1:]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _without_input_fingerprints(output: dict) -> dict:
    """_SUCCESS markers by config hash only: a stage's input fingerprint names the files it reads,
    models inside the installed packages included, whose paths differ between the two environments."""
    return {k: v[0] if k.endswith("/_SUCCESS") else v for k, v in output.items()}


def _first_errors(workdir: str) -> str:
    """Each stage's first error record, to say why a run failed."""
    import pyarrow.parquet as pq

    import_all()
    lines = []
    for stage in pipeline_stages():
        files = [f for f in storage.expand(f"{workdir}/{stage}/errors") if f.endswith(".parquet")]
        rows = pq.read_table(storage.open_input(files[0])).to_pylist()[:1] if files else []
        lines += [f"\n{stage} error: {row}" for row in rows]
    return "".join(lines)


def test_foreign_python_spark35_s3_cluster_run_equals_local_mode(tmp_path, s3_endpoint, spark35_home):
    s3 = s3_endpoint
    started = time.time()
    python = foreign_interpreter()
    dist = foreign_dist()
    (tmp_path / "home").mkdir()
    node = bare_env(tmp_path / "home", python)

    # The driver's environment, from the artifacts only.
    node_env = tmp_path / "node-env"
    setup = subprocess.run(["bash", str(dist / NODE_SETUP), str(dist / WHEELHOUSE)], cwd=tmp_path,
                           env={**node, "GLMDATA_NODE_ENV": str(node_env), "GLMDATA_PYTHON": python},
                           capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    probe = subprocess.run([str(node_env / "bin" / "python"), "-c", "import sys, pipeline; print(sys.version_info[:2], pipeline.__file__)"],
                           cwd=tmp_path, env=node, capture_output=True, text=True)
    assert probe.stdout.startswith(f"({FOREIGN_PYTHON.replace('.', ', ')})") and str(node_env) in probe.stdout, probe

    cluster_cfg, local_cfg = _configs(tmp_path)
    cluster = StandaloneCluster(tmp_path / "standalone", workers=1, cores=2, spark_home=str(spark35_home), env=node)
    try:
        submit_env = {**node, "SPARK_HOME": str(spark35_home), **s3}
        glmdata = [str(node_env / "bin" / "glmdata"), "submit", "--platform", "spark-standalone", "--config",
                   str(cluster_cfg), "--dist", str(dist), "--master", cluster.url]
        dry = subprocess.run(glmdata + ["--dry-run"], cwd=tmp_path, env=submit_env, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        command = shlex.split(dry.stdout.strip().splitlines()[-1])
        assert f"{(dist / ENV_ARCHIVE).as_uri()}#environment" in command and command[0].startswith(str(spark35_home))
        sources = [str(REPO / pkg) for pkg in ("pipeline", "filters", "tokenizer")]
        assert not any(src in part for part in command for src in sources), "the checkout's code is on no path"
        assert any(part.startswith(str(node_env)) and part.endswith("cluster_entry.py") for part in command)

        log = tmp_path / "submit.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, cwd=tmp_path, env=submit_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            # Meanwhile the local-mode reference: this checkout, Spark 4, the same s3:// inputs.
            reference = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(local_cfg),
                                        "--no-report"], cwd=REPO, capture_output=True, text=True, timeout=900,
                                       env={**os.environ, **s3, "GLMDATA_CACHE": str(tmp_path / "cache-local")})
            assert reference.returncode == 0, (reference.stdout[-3000:] + reference.stderr[-3000:]
                                               + _first_errors(str(tmp_path / "local")))
            assert list((tmp_path / "cache-local").rglob("*.ftz")), "workers fetched the language-ID model from S3"
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        cluster.stop()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-6000:] + _first_errors(f"s3://{BUCKET}/cluster")
    assert f"Running Spark version {PYSPARK_35}" in (tmp_path / "standalone" / "master.log").read_text(errors="replace")

    import_all()
    stages = pipeline_stages()
    for stage in stages:
        assert storage.exists(f"s3://{BUCKET}/cluster/{stage}/_SUCCESS"), stage
    assert storage.exists(f"s3://{BUCKET}/cluster/report/report.html")
    _download(f"s3://{BUCKET}/cluster", tmp_path / "from-s3")
    expected = _without_input_fingerprints(committed_output(tmp_path / "local", stages))
    assert _without_input_fingerprints(committed_output(tmp_path / "from-s3", stages)) == expected
    assert {"ingest/data", "dedup/data", "dedup/rejected/dup_near", "encode/data"} <= set(expected)
    assert any(k.startswith("shards/shard-") and k.endswith(".arrow") for k in expected)
    print(f"rehearsal: {time.time() - started:.0f} s")
