"""A real Spark standalone cluster on 127.0.0.1: a master and two workers started with the
spark-class that ships with pyspark. One submission with `glmdata submit --platform spark-standalone`
and the `make dist` environment (--archives, as on Dataproc) runs the real ingest and langid stages on
the demo corpus, then two e2e stages whose filter is slow enough for one worker's executor to be
killed (SIGKILL) in the middle of it. The job completes and every stage's output equals local mode's:
no document lost or doubled. Also: the --dry-run command of every other platform."""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from e2e_toys import ORDER as TOY_ORDER
from e2e_toys import output_digest, write_inputs
from pipeline.config import load_config
from pipeline.run_all import run_pipeline

from conftest import REPO

REAL_ORDER = ["ingest", "langid"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


class StandaloneCluster:
    def __init__(self, root: Path, workers: int = 2):
        self.root = root
        self.env = {**os.environ, "SPARK_HOME": _spark_home(), "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_LOG_DIR": str(root / "logs"), "SPARK_NO_DAEMONIZE": "1"}
        self.port, self.ui_port = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        spark_class = os.path.join(_spark_home(), "bin", "spark-class")
        self.procs = [self._start(root / "master.log", [spark_class, "org.apache.spark.deploy.master.Master",
                                                        "--host", "127.0.0.1", "--port", str(self.port),
                                                        "--webui-port", str(self.ui_port)])]
        self.worker_ports = [_free_port() for _ in range(workers)]
        for i, port in enumerate(self.worker_ports):
            self.procs.append(self._start(root / f"worker{i}.log", [
                spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", str(port),
                "--webui-port", str(_free_port()), "--cores", "1", "--memory", "2g",
                "--work-dir", str(root / f"worker{i}"), self.url]))
        self._wait_alive(workers)

    def _start(self, log: Path, cmd: list[str]) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(cmd, env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _wait_alive(self, workers: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as r:
                    if sum(w["state"] == "ALIVE" for w in json.load(r)["workers"]) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"standalone cluster did not come up; see {self.root}/*.log")

    def executor_pids(self, worker: int) -> list[int]:
        """Executor JVMs launched by one worker: they run in <worker work dir>/<app>/<executor>."""
        work = str(self.root / f"worker{worker}")
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if b"CoarseGrainedExecutorBackend" in cmdline and cwd.startswith(work + "/"):
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        for p in reversed(self.procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dist():
    """`make dist`: the wheel and the venv-pack'ed executor environment (rebuilt only when sources change)."""
    started = time.time()
    made = subprocess.run(["make", "--no-print-directory", "dist"], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    print(f"make dist: {time.time() - started:.0f} s")
    assert (REPO / "dist" / "glmdata-env.tar.gz").exists()
    return REPO / "dist"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    yield c
    c.stop()


EXECUTOR_CONF = {"spark.executor.cores": "1", "spark.executor.memory": "1g", "spark.cores.max": "2",
                 "spark.task.maxFailures": "4", "spark.sql.shuffle.partitions": "4"}


def _pipeline_config(root: Path, shared_data: Path) -> Path:
    """configs/demo.yaml's ingest and langid on a fresh demo corpus, then the two e2e stages (whose
    filter is slow enough to be caught in the middle), written to `root`."""
    corpus = root / "corpus"
    subprocess.run([sys.executable, "-m", "pipeline.demo_corpus", "--out", str(corpus)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    write_inputs(root / "jsonl", shared_data, files=8, lines_per_file=20)
    raw = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    for src in raw["ingest"]["sources"]:
        src["paths"] = [p.replace("../work/demo-corpus", str(corpus)) for p in src["paths"]]
    cfg = {"run": {"workdir": str(root / "cluster"), "engine": "spark",
                   "spark": {"master": "local[2]", "conf": EXECUTOR_CONF}},
           **{k: raw[k] for k in REAL_ORDER},
           "e2e_source": {"inputs": str(root / "jsonl" / "*.jsonl")},
           "e2e_filter": {"min_chars": 300, "unit_seconds": 1.5}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def test_standalone_cluster_with_executor_killed_matches_local_mode(tmp_path, shared_data, dist, cluster,
                                                                    spark_session_engine):
    cfg_path = _pipeline_config(tmp_path, shared_data)
    toys = str(REPO / "tests" / "e2e_toys.py")
    order = REAL_ORDER + TOY_ORDER
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "submit", "--platform", "spark-standalone",
                             "--config", str(cfg_path), "--master", cluster.url, "--entry", toys, "--py-files", toys],
                            cwd=REPO, env={**os.environ, "E2E_STAGE_ORDER": ",".join(order)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Meanwhile, the same config in local mode, for reference.
        local = load_config(cfg_path, {"run.workdir": str(tmp_path / "local")})
        run_pipeline(local, spark_session_engine, order=order, report=False)
        expected = output_digest(tmp_path / "local", order)

        wd = tmp_path / "cluster"
        deadline = time.time() + 300
        while not any((wd / ".tmp").glob("e2e_filter-*/data/part-*.parquet")):
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-5000:]
            assert time.time() < deadline, "the e2e_filter stage never started"
            time.sleep(0.1)
        assert not (wd / "e2e_filter" / "_SUCCESS").exists(), "the stage finished before the kill"
        victims = cluster.executor_pids(0)
        assert victims, "no executor on worker 0"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        log = proc.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log[-5000:]
    assert "--archives" in log and "glmdata-env.tar.gz#environment" in log, "submitted with the dist environment"
    assert "lost executor" in log.lower(), "the kill reached the job"
    assert output_digest(wd, order) == expected
    import pyarrow.parquet as pq

    stats = json.loads((wd / "e2e_filter" / "stats.json").read_text())
    ids = [i for f in sorted((wd / "e2e_filter" / "data").glob("*.parquet")) for i in pq.read_table(f)["id"].to_pylist()]
    assert stats["in"]["docs"] == 160 and len(ids) == len(set(ids)) == stats["kept"]["docs"], "lost or doubled"


@pytest.mark.parametrize("platform,config,expect", [
    ("dataproc", "dataproc.yaml", ["gcloud dataproc jobs submit pyspark", "spark.submit.deployMode=cluster",
                                   "#environment", "-- run --config dataproc.yaml"]),
    ("emr", "emr.yaml", ["aws emr add-steps", "command-runner.jar", "--deploy-mode", "#environment"]),
    ("emr-serverless", "emr.yaml", ["aws emr-serverless start-job-run", "spark.archives=s3://",
                                    "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python"]),
    ("dataflow", "dataproc.yaml", ["run.beam.runner=DataflowRunner", "--temp_location=gs://"]),
])
def test_dry_run_commands(platform, config, expect):
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", "--platform", platform, "--config",
                          str(REPO / "configs" / config), "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    command = out.stdout.strip().splitlines()[-1]
    shlex.split(command)  # one valid shell command
    for piece in expect:
        assert piece in command, (piece, command)
    if platform in ("dataproc", "emr", "emr-serverless"):
        assert "# upload" in out.stdout and "glmdata-env.tar.gz" in out.stdout
