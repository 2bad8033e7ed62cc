"""A real Spark standalone cluster on 127.0.0.1: a master and two workers started with the
spark-class that ships with pyspark. The real pipeline (configs/demo.yaml on a fresh demo corpus:
ingest, langid, quality, dedup, mix, tokenizer, encode, shards; --no-report) is submitted with
`glmdata submit --platform spark-standalone` and the `make dist` environment (--archives, as on
Dataproc). As soon as dedup's first signature file appears in its private folder (the stage not
committed, its tasks running), worker 0's executor is killed (SIGKILL): the job completes, and every
stage's committed output equals a local-mode run of the same config (the session's reference run,
conftest.demo_reference, in this process meanwhile when no test used it before), with no document lost
or doubled.
Also: the --dry-run command of every other platform."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pipeline import registry
from pipeline.run_all import pipeline_stages
from pipeline.stage import StageStats

from conftest import REPO
from demo_runs import DEMO, KILLED, QUICK_JVM, committed_output, demo_sources, wait_for_killed_stage

DOC_STAGES = ["ingest", "langid", "quality", "dedup"]  # one row per document, keyed by id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


class StandaloneCluster:
    """A master and `workers` workers of `cores` cores each, started from `spark_home` (default: the
    installed pyspark's) in the environment `env` (default: this process's)."""

    def __init__(self, root: Path, workers: int = 2, cores: int = 1, spark_home: str | None = None,
                 env: dict[str, str] | None = None):
        self.root = root
        spark_home = spark_home or _spark_home()
        # java.io.tmpdir under `root` for the master, the workers and the executors they start (which
        # inherit the environment): an executor fetches the --archives environment into a temporary
        # folder there, which one killed on purpose cannot remove.
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.env = {**(os.environ if env is None else env), "SPARK_HOME": spark_home, "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_LOG_DIR": str(root / "logs"), "SPARK_NO_DAEMONIZE": "1",
                    "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={root / 'tmp'}"}
        self.port, self.ui_port = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        spark_class = os.path.join(spark_home, "bin", "spark-class")
        self.procs = [self._start(root / "master.log", [spark_class, "org.apache.spark.deploy.master.Master",
                                                        "--host", "127.0.0.1", "--port", str(self.port),
                                                        "--webui-port", str(self.ui_port)])]
        self.worker_ports = [_free_port() for _ in range(workers)]
        for i, port in enumerate(self.worker_ports):
            self.procs.append(self._start(root / f"worker{i}.log", [
                spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", str(port),
                "--webui-port", str(_free_port()), "--cores", str(cores), "--memory", f"{2 * cores}g",
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
                 "spark.task.maxFailures": "4", "spark.sql.shuffle.partitions": "4", **QUICK_JVM,
                 "spark.executor.extraJavaOptions": QUICK_JVM["spark.driver.extraJavaOptions"]}


def _absolute(value, base: Path):
    """The config's relative paths (block lists, the corpus) made absolute, for a copy elsewhere; not
    normalised, so that each stage's config hash is the one of configs/demo.yaml loaded in place."""
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    return str(base / value) if isinstance(value, str) and value.startswith("../") else value


def _demo_config(root: Path, corpus: Path) -> Path:
    """configs/demo.yaml on the demo corpus at `corpus`, sized for the two 1-core executors, written to
    `root` (submit sends the config file itself, so the changes cannot travel as --set)."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["ingest"]["sources"] = demo_sources(corpus)
    cfg = _absolute(raw, DEMO.parent)
    cfg["run"]["workdir"] = str(root / "cluster")
    cfg["run"]["spark"]["conf"] = EXECUTOR_CONF
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def _kill_worker_executor_in_the_middle_of_killed_stage(proc, cluster, workdir: Path, log: Path,
                                                        timeout: float = 240.0) -> None:
    """SIGKILL worker 0's executors once the killed stage has written its signatures into its
    private folder (upstream committed, the stage not)."""
    wait_for_killed_stage(workdir, lambda: proc.poll() is None, lambda: log.read_text(errors="replace")[-5000:], timeout)
    victims = cluster.executor_pids(0)
    assert victims, "no executor on worker 0"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert not (workdir / KILLED / "_SUCCESS").exists(), f"{KILLED} committed before the kill"


def _assert_no_document_lost_or_doubled(workdir: Path) -> None:
    for name in pipeline_stages():
        stats = json.loads((workdir / name / "stats.json").read_text())
        StageStats.from_dict(stats).check_conservation(name)
        upstream = registry.STAGES[name].upstream
        if name in DOC_STAGES and upstream:
            assert stats["in"]["docs"] == json.loads((workdir / upstream / "stats.json").read_text())["kept"]["docs"], name
        if name in DOC_STAGES:
            ids = [i for f in (workdir / name / "data").glob("*.parquet") for i in pq.read_table(f, columns=["id"])["id"].to_pylist()]
            assert len(ids) == len(set(ids)) == stats["kept"]["docs"], name


def test_standalone_cluster_with_executor_killed_matches_local_mode(tmp_path, dist, cluster, demo_reference):
    cfg_path = _demo_config(tmp_path, demo_reference.corpus)
    wd = tmp_path / "cluster"
    log_path = tmp_path / "submit.log"  # a file, not a pipe: a full pipe would stall the driver while we wait
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "submit", "--platform", "spark-standalone",
                                 "--config", str(cfg_path), "--master", cluster.url, "--no-report"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _kill_worker_executor_in_the_middle_of_killed_stage(proc, cluster, wd, log_path)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-5000:]
    assert "--archives" in log and "glmdata-env.tar.gz#environment" in log, "submitted with the dist environment"
    assert "lost executor" in log.lower(), "the kill reached the job"
    assert demo_reference.stages() == pipeline_stages()
    expected = committed_output(demo_reference.workdir, pipeline_stages())
    assert committed_output(wd, pipeline_stages()) == expected
    assert not (wd / "report").exists(), "--no-report reached `glmdata run` on the cluster"
    assert {"ingest/data", "dedup/data", "dedup/rejected/dup_near", "mix/data", "encode/data"} <= set(expected)
    assert any(k.startswith("shards/shard-") and k.endswith(".arrow") for k in expected)
    _assert_no_document_lost_or_doubled(wd)
