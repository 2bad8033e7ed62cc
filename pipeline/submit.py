"""`glmdata submit --platform P --config X [--dry-run] [--wait]`: run the pipeline on a cluster.

Builds (and with --dry-run only prints) the real submission for each platform from what `make dist`
built in dist/ (pipeline/dist.py names the artifacts), uploads what the cluster reads from object
storage, runs the platform's own CLI, and with --wait follows the job to its end (pipeline/job_watch.py)
and exits with its status. How the project and its dependencies reach the nodes, per platform:

    dataproc, emr, spark-standalone   dist/glmdata-env.tar.gz through spark-submit --archives (#environment);
                                      executors run ./environment/bin/python
    dataproc-serverless               a custom container image built from dist/Dockerfile.dataproc-serverless
                                      (submit.dataproc_serverless_image)
    emr-serverless                    the application's custom image, built from dist/Dockerfile.emr-serverless
                                      (aws emr-serverless create-application --image-configuration imageUri=...)
    dataflow, flink                   Beam workers run a custom SDK container built from dist/Dockerfile.dataflow
                                      (--sdk_container_image / --environment_config), nothing installed at start

The run config travels as a file, and the job runs `glmdata run` on it with the --set items and
--engine given to submit (checked here first, with every stage's own checks); the driver is
pipeline/cluster_entry.py. On YARN (Dataproc, EMR) the driver runs in the cluster (deploy mode
cluster) with the same environment; on a standalone master the driver is this machine's Python
(Spark supports client mode only for Python there).
Spark sizing comes from the config's run.spark.conf; Beam runners get run.beam.options plus any
arguments after `--`. Nothing is joined into a shell string: each value is one argument, gcloud's
dict flags switch delimiter when a value holds a comma, and EMR Serverless gets its Spark settings as
JSON (configurationOverrides), so a value with a space or a comma arrives as written.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline import storage
from pipeline.config import ConfigError, UsageError, is_remote, register_section
from pipeline.dist import (DOCKERFILES, ENV_ARCHIVE, ENV_DIR, EXECUTOR_PYTHON, MANIFEST, NODE_PYTHON, NODE_SETUP,
                           WHEELHOUSE)
from pipeline.job_watch import (DataprocBatchWatcher, DataprocJobWatcher, EmrServerlessWatcher, EmrStepWatcher,
                                Job, WaitTimeout, WatchError, Watcher, wait)
from pipeline.registry import register_command

SPARK_PLATFORMS = ("dataproc", "dataproc-serverless", "emr", "emr-serverless", "spark-standalone")
BEAM_PLATFORMS = ("dataflow", "flink")
ARCHIVE_PLATFORMS = ("dataproc", "emr", "spark-standalone")  # the environment travels as dist/glmdata-env.tar.gz
# spark-submit reads --files/--archives/--py-files as URIs (java.net.URI): a space or a non-ASCII
# character there turns "s3://b/my cfg.yaml" into a local path. Uploads get names without them.
URI_SAFE_PUNCTUATION = "._-/:~=+@"
URI_UNSAFE = re.compile(f"[^A-Za-z0-9{re.escape(URI_SAFE_PUNCTUATION)}]")
GCLOUD_DELIMITERS = ",#@|~%^"  # gcloud dict flags: "," unless a value holds one, then ^X^ (gcloud topic escaping)
WAIT_TIMEOUT_EXIT = 124  # --wait-timeout passed, the job still running (as timeout(1) exits)


@register_section("submit")
@dataclass
class SubmitSection:
    artifacts: str = ""  # where submit uploads the entry, the config (and the environment): gs://bucket/glmdata (Dataproc), s3://... (EMR)
    region: str = ""  # GCP or AWS region of the cluster
    project: str = ""  # GCP project (Dataproc, Dataflow); empty: gcloud's default
    dataproc_cluster: str = ""  # Dataproc cluster name
    dataproc_serverless_version: str = "2.2"  # Dataproc Serverless runtime (2.2: Spark 3.5)
    dataproc_serverless_image: str = ""  # image built from dist/Dockerfile.dataproc-serverless, e.g. us-docker.pkg.dev/P/R/glmdata:1
    emr_cluster_id: str = ""  # EMR on EC2 cluster id, j-XXXXXXXXXXXX
    emr_serverless_application_id: str = ""  # EMR Serverless application (Spark, release 7.x, image from dist/Dockerfile.emr-serverless)
    emr_serverless_role_arn: str = ""  # job execution role with access to the artifacts and the workdir
    spark_master: str = "spark://127.0.0.1:7077"  # standalone master URL
    dataflow_image: str = ""  # Beam SDK container built from dist/Dockerfile.dataflow (Dataflow and Flink workers)
    flink_master: str = "localhost:8081"  # Flink JobManager (REST) for the Beam FlinkRunner
    flink_version: str = "1.19"  # the cluster's Flink minor version; Beam picks its job server for it
    flink_environment_type: Literal["DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK"] = "DOCKER"  # how Flink runs the Python SDK harness
    flink_environment_config: str = ""  # DOCKER: the image (default: dataflow_image); PROCESS: {"command": ...}; EXTERNAL: host:port
    poll_seconds: float = 30.0  # --wait: seconds between two state queries


@dataclass
class Submission:
    """What `glmdata submit` does: copy local files to the cluster's storage, then run one command."""

    platform: str
    command: list[str]
    uploads: list[tuple[str, str]] = field(default_factory=list)  # (local path, remote URI)
    watcher: Watcher | None = None  # asynchronous platforms: how to follow the job (synchronous ones: None)

    def describe(self) -> str:
        return "\n".join([f"# upload {src} -> {dst}" for src, dst in self.uploads] + [shlex.join(self.command)])


def dist_wheel(dist: Path) -> Path | None:
    wheels = sorted((dist / WHEELHOUSE).glob("glmdata-*.whl"))
    return wheels[-1] if wheels else None


def spark_submit_binary() -> str:
    """spark-submit on PATH, else $SPARK_HOME's, else the one that ships with the pyspark package."""
    if shutil.which("spark-submit"):
        return shutil.which("spark-submit")
    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark

        home = os.path.dirname(pyspark.__file__)
    return os.path.join(home, "bin", "spark-submit")


def _spark_conf(cfg, extra: dict[str, str], python: str = EXECUTOR_PYTHON) -> list[tuple[str, str]]:
    conf = {"spark.pyspark.python": python, **cfg.run.spark.conf, **extra}
    return sorted(conf.items())


def gcloud_dict(pairs: list[tuple[str, str]]) -> str:
    """KEY=VALUE pairs for a gcloud dict flag (--properties): comma-separated, or with the first
    delimiter no key or value contains, announced as ^X^ (https://cloud.google.com/sdk/gcloud/reference/topic/escaping)."""
    text = "".join(k + v for k, v in pairs)
    delimiter = next((d for d in GCLOUD_DELIMITERS if d not in text), None)
    if delimiter is None:
        raise ConfigError(f"run.spark.conf: no delimiter left for gcloud --properties (values use all of {GCLOUD_DELIMITERS})")
    joined = delimiter.join(f"{k}={v}" for k, v in pairs)
    return joined if delimiter == "," else f"^{delimiter}^{joined}"


def _entry_args(cfg_name: str, args, engine: str | None = None) -> list[str]:
    """`glmdata run` on the cluster with the config the user asked for: the uploaded file plus the
    --set items as written (parsed there as here) and --engine."""
    out = ["run", "--config", cfg_name]
    if args.first:
        out += ["--from", args.first]
    if args.last:
        out += ["--until", args.last]
    if args.no_report:
        out += ["--no-report"]
    for item in args.set:
        out += ["--set", item]
    engine = engine or args.engine
    return out + (["--engine", engine] if engine else [])


def check_engine(cfg, args) -> None:
    """Refuse an engine the platform does not run. Beam platforms run `--engine beam` whatever
    run.engine says; Spark platforms run the effective run.engine (the YAML, --set or --engine)."""
    needed = "beam" if args.platform in BEAM_PLATFORMS else "spark"
    engine = cfg.run.engine if needed == "spark" else args.engine or needed
    if engine != needed:
        where = f"--engine {engine}" if args.engine else f"{cfg.path}: run.engine is {engine}"
        raise ConfigError(f"{where}, but --platform {args.platform} runs the {needed} engine")


def _required(cfg, sub, key: str, platform: str, what: str) -> str:
    value = getattr(sub, key)
    if not value:
        raise ConfigError(f"{cfg.path}: submit.{key}: --platform {platform} needs {what}")
    return value


# Platforms whose nodes cannot see this machine's disk: the workdir must be object storage (or HDFS).
REMOTE_WORKDIR_PLATFORMS = ("dataproc", "dataproc-serverless", "emr", "emr-serverless", "dataflow")


def check_workdir(cfg, args) -> None:
    """Refuse a local run.workdir where the job runs on other machines: each node would write its own
    disk, and the next stage would find nothing there."""
    workdir = cfg.run.workdir
    if args.platform not in REMOTE_WORKDIR_PLATFORMS or is_remote(workdir):
        return
    scheme = "gs" if args.platform.startswith(("dataproc", "dataflow")) else "s3"
    raise ConfigError(f"{cfg.where.at('run.workdir')}: {workdir} is a local path, but --platform {args.platform} "
                      f"runs on machines that cannot see this one's disk: use a folder under {scheme}://")


# The Python the archive's launcher finds on the nodes of the platforms that run dist/glmdata-env.tar.gz
# (the serverless images install the dist's own): Dataproc 2.2/2.3 images' Miniconda3 3.11; EMR 7.x's
# system Python is 3.9, below the project's floor, and python3.11 comes from the release's packages, which
# dist/glmdata-node-setup.sh installs as a bootstrap action (README, platforms table).
NODE_PYTHONS = {"dataproc": ("3.11",), "emr": ("3.11",)}


def python_mismatch(platform: str, dist: Path) -> str | None:
    """A warning when dist/ was built for a Python the platform's nodes do not have: the executors
    would stop at start (the launcher finds no python3.X) once the cluster is paid for."""
    manifest = dist / MANIFEST
    if platform not in NODE_PYTHONS or not manifest.exists():
        return None
    try:
        built = json.loads(manifest.read_text())["target"]["python"]
    except (ValueError, KeyError, TypeError) as e:  # a cut or hand-edited manifest: the archive may be too
        return f"warning: {manifest} cannot be read ({type(e).__name__}: {e}): rebuild it with `make dist`"
    if built in NODE_PYTHONS[platform]:
        return None
    return (f"warning: {manifest} was built for CPython {built}, but --platform {platform} nodes have Python "
            f"{' and '.join(NODE_PYTHONS[platform])}: the executors will stop with 'no python{built} on this node' "
            f"unless the cluster installs it (GLMDATA_PYTHON, or {NODE_SETUP} as its init/bootstrap action); "
            f"else rebuild with `make dist DIST_PYTHON={NODE_PYTHONS[platform][-1]}`")


def batch_id() -> str:
    """A Dataproc Serverless batch id: 4-63 lowercase letters, digits and hyphens (batches.create's
    batchId). The random suffix keeps two submissions in the same second apart."""
    return time.strftime("glmdata-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def upload_name(path: str) -> str:
    """The name a local file uploads under: one spark-submit can parse as part of a URI."""
    return URI_UNSAFE.sub("_", Path(path).name)


def check_distinct_upload_names(local: list[str]) -> None:
    """Two files from different folders that upload under one name: the second would overwrite the
    first in submit.artifacts, and the job would read it twice."""
    first: dict[str, str] = {}
    for path in local:
        name = upload_name(path)
        if first.setdefault(name, path) != path:
            raise UsageError(f"{first[name]} and {path} would both upload as {name}: rename one of them")


def build_submission(cfg, args, dist: Path) -> Submission:
    """The submission for `args.platform` from the loaded config and the dist/ folder."""
    from pipeline import cluster_entry

    sub = cfg.section("submit")
    platform = args.platform
    entry = Path(args.entry or cluster_entry.__file__).resolve()
    cfg_path = Path(cfg.path).resolve()
    env_archive = dist / ENV_ARCHIVE
    py_files = [str(Path(p).resolve()) for p in args.py_files]

    if platform == "spark-standalone":
        conf = _spark_conf(cfg, {"spark.pyspark.driver.python": sys.executable})
        for var in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if os.environ.get(var):  # S3-compatible storage reached by the executors through pyarrow.fs
                conf.append((f"spark.executorEnv.{var}", os.environ[var]))
        # --archives as a file: URI (percent-encoded): spark-submit reads "/my dist/x.tar.gz#environment" as a file
        # of that whole name (the path is no URI, so the #fragment is not split off) and stops: NoSuchFileException.
        cmd = [spark_submit_binary(), "--master", args.master or sub.spark_master, "--deploy-mode", "client",
               "--name", "glmdata", "--archives", f"{env_archive.as_uri()}#{ENV_DIR}"]
        if py_files:
            cmd += ["--py-files", ",".join(py_files)]
        for k, v in conf:
            cmd += ["--conf", f"{k}={v}"]
        return Submission(platform, cmd + args.extra + [str(entry), *_entry_args(str(cfg_path), args)])

    if platform in BEAM_PLATFORMS:
        return _beam_submission(cfg, sub, args, cfg_path, dist)

    # Dataproc and EMR read everything from object storage: upload the entry, the config (the environment).
    scheme = "gs" if platform.startswith("dataproc") else "s3"
    artifacts = _required(cfg, sub, "artifacts", platform, f"a {scheme}:// folder to upload the entry and the config to")
    local = [str(entry), str(cfg_path), *py_files] + ([str(env_archive)] if platform in ARCHIVE_PLATFORMS else [])
    check_distinct_upload_names(local)
    unsafe = URI_UNSAFE.search(artifacts)
    if unsafe:
        raise ConfigError(f"{cfg.path}: submit.artifacts: {artifacts!r} holds {unsafe.group()!r}, which spark-submit "
                          f"cannot take in a URI: use a folder named with letters, digits and {URI_SAFE_PUNCTUATION}")
    remote = {Path(p).name: posixpath.join(artifacts, upload_name(p)) for p in local}
    uploads = [(p, remote[Path(p).name]) for p in local]
    remote_py_files = [remote[Path(p).name] for p in py_files]
    archive = f"{remote.get(ENV_ARCHIVE)}#{ENV_DIR}"
    entry_args = _entry_args(posixpath.basename(remote[cfg_path.name]), args)
    if scheme == "gs":  # an empty --region= is an error for gcloud, and the watcher's console URL needs it
        _required(cfg, sub, "region", platform, "the Dataproc region, e.g. us-central1")
    gcloud_scope = [f"--region={sub.region}", *([f"--project={sub.project}"] if sub.project else [])]

    if platform == "dataproc":  # https://cloud.google.com/sdk/gcloud/reference/dataproc/jobs/submit/pyspark
        conf = _spark_conf(cfg, {"spark.submit.deployMode": "cluster", "spark.pyspark.driver.python": EXECUTOR_PYTHON})
        cmd = ["gcloud", "dataproc", "jobs", "submit", "pyspark", remote[entry.name],
               f"--cluster={_required(cfg, sub, 'dataproc_cluster', platform, 'the cluster name')}", *gcloud_scope,
               f"--archives={archive}", f"--files={remote[cfg_path.name]}", f"--properties={gcloud_dict(conf)}"]
        cmd += [f"--py-files={','.join(remote_py_files)}"] if remote_py_files else []
        cmd += ["--async", "--format=json"]
        return Submission(platform, cmd + args.extra + ["--", *entry_args], uploads,
                          DataprocJobWatcher(sub.region, sub.project))

    if platform == "dataproc-serverless":  # https://cloud.google.com/sdk/gcloud/reference/dataproc/batches/submit/pyspark
        image = _required(cfg, sub, "dataproc_serverless_image", platform,
                          f"a container image built from dist/{DOCKERFILES[platform]} and pushed to Artifact Registry")
        conf = _spark_conf(cfg, {"spark.pyspark.driver.python": NODE_PYTHON}, python=NODE_PYTHON)
        batch = batch_id()
        cmd = ["gcloud", "dataproc", "batches", "submit", "pyspark", remote[entry.name], f"--batch={batch}",
               *gcloud_scope, f"--version={sub.dataproc_serverless_version}", f"--container-image={image}",
               f"--files={remote[cfg_path.name]}", f"--properties={gcloud_dict(conf)}"]
        cmd += [f"--py-files={','.join(remote_py_files)}"] if remote_py_files else []
        cmd += ["--async", "--format=json"]
        return Submission(platform, cmd + args.extra + ["--", *entry_args], uploads,
                          DataprocBatchWatcher(sub.region, sub.project, batch))

    aws_scope = ["--region", sub.region] if sub.region else []
    if platform == "emr":  # https://docs.aws.amazon.com/cli/latest/reference/emr/add-steps.html
        cluster = _required(cfg, sub, "emr_cluster_id", platform, "the cluster id (j-...)")
        conf = _spark_conf(cfg, {"spark.pyspark.driver.python": EXECUTOR_PYTHON,
                                 "spark.yarn.appMasterEnv.PYSPARK_PYTHON": EXECUTOR_PYTHON})
        step_args = ["spark-submit", "--deploy-mode", "cluster", "--archives", archive, "--files", remote[cfg_path.name]]
        step_args += ["--py-files", ",".join(remote_py_files)] if remote_py_files else []
        for k, v in conf:
            step_args += ["--conf", f"{k}={v}"]
        step = {"Type": "CUSTOM_JAR", "Name": "glmdata", "ActionOnFailure": "CONTINUE", "Jar": "command-runner.jar",
                "Args": step_args + args.extra + [remote[entry.name], *entry_args]}
        cmd = ["aws", "emr", "add-steps", "--cluster-id", cluster, "--steps", json.dumps([step]), *aws_scope,
               "--output", "json"]
        return Submission(platform, cmd, uploads, EmrStepWatcher(cluster, sub.region))

    if platform == "emr-serverless":  # https://docs.aws.amazon.com/cli/latest/reference/emr-serverless/start-job-run.html
        application = _required(cfg, sub, "emr_serverless_application_id", platform,
                                f"an application created with the image built from dist/{DOCKERFILES[platform]}")
        role = _required(cfg, sub, "emr_serverless_role_arn", platform, "the job execution role ARN")
        conf = dict(_spark_conf(cfg, {"spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": NODE_PYTHON,
                                      "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": NODE_PYTHON,
                                      "spark.executorEnv.PYSPARK_PYTHON": NODE_PYTHON}, python=NODE_PYTHON))
        submit_params = ["--files", remote[cfg_path.name]]
        submit_params += ["--py-files", ",".join(remote_py_files)] if remote_py_files else []
        log_uri = posixpath.join(artifacts, "logs") + "/"
        job = {"sparkSubmit": {"entryPoint": remote[entry.name], "entryPointArguments": entry_args,
                               "sparkSubmitParameters": shlex.join(submit_params + args.extra)}}
        overrides = {"applicationConfiguration": [{"classification": "spark-defaults", "properties": conf}],
                     "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": log_uri}}}
        cmd = ["aws", "emr-serverless", "start-job-run", "--application-id", application, "--execution-role-arn", role,
               "--name", "glmdata", "--job-driver", json.dumps(job), "--configuration-overrides", json.dumps(overrides),
               *aws_scope, "--output", "json"]
        return Submission(platform, cmd, uploads, EmrServerlessWatcher(application, sub.region, log_uri))
    raise UsageError(f"--platform {platform}: expected one of {', '.join(SPARK_PLATFORMS + BEAM_PLATFORMS)}")


def _beam_submission(cfg, sub, args, cfg_path: Path, dist: Path) -> Submission:
    """`glmdata run --engine beam` on this machine with the runner's options: the driver submits each
    stage and waits for it, so the command's exit status is the job's."""
    options = list(cfg.run.beam.options)
    if args.platform == "dataflow":  # https://cloud.google.com/dataflow/docs/reference/pipeline-options
        runner = "DataflowRunner"
        artifacts = _required(cfg, sub, "artifacts", "dataflow", "a gs:// folder for staging and temporary files")
        _required(cfg, sub, "region", "dataflow", "the Dataflow region, e.g. us-central1")
        image = _required(cfg, sub, "dataflow_image", "dataflow",
                          f"an SDK container built from dist/{DOCKERFILES['dataflow']} (workers then install nothing at start)")
        options += [f"--region={sub.region}", f"--temp_location={posixpath.join(artifacts, 'tmp')}",
                    f"--sdk_container_image={image}", "--sdk_location=container"]
        options += [f"--project={sub.project}"] if sub.project else []
    else:  # https://beam.apache.org/documentation/runners/flink/
        runner = "FlinkRunner"
        options += [f"--flink_master={sub.flink_master}", f"--flink_version={sub.flink_version}",
                    f"--environment_type={sub.flink_environment_type}"]
        config = sub.flink_environment_config or (sub.dataflow_image if sub.flink_environment_type == "DOCKER" else "")
        if config:
            options.append(f"--environment_config={config}")
        elif sub.flink_environment_type == "DOCKER":  # Beam's own SDK image: it installs the wheel at start
            wheel = dist_wheel(dist) or dist / WHEELHOUSE / "glmdata-*.whl"  # missing: reported before submitting
            options.append(f"--extra_package={wheel}")
    # options already hold the user's run.beam.options: these last --set items win over theirs
    cmd = [sys.executable, "-m", "pipeline.cli", *_entry_args(str(cfg_path), args, "beam"),
           "--set", f"run.beam.runner={runner}", "--set", f"run.beam.options={json.dumps(options + args.extra)}"]
    return Submission(args.platform, cmd)


def upload(src: str, dst: str) -> None:
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(dst)
    storage.makedirs(posixpath.dirname(dst))
    pafs.copy_files(os.path.abspath(src), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def missing_artifact(sub: Submission, dist: Path) -> Path | None:
    """The dist/ file this submission reads from this machine, when it is absent."""
    if sub.platform in ARCHIVE_PLATFORMS and not (dist / ENV_ARCHIVE).exists():
        return dist / ENV_ARCHIVE
    wheel = next((a.split("=", 1)[1] for a in sub.command if a.startswith("run.beam.options=")
                  and "--extra_package=" in a), None)
    if wheel is not None and dist_wheel(dist) is None:
        return dist / WHEELHOUSE / "glmdata-*.whl"
    return None


def run_submission(sub: Submission, wait_for_job: bool, poll_seconds: float, wait_timeout: float | None = None) -> int:
    """Upload, run the command; for asynchronous platforms report the job and with --wait follow it."""
    for src, dst in sub.uploads:
        print(f"upload {src} -> {dst}", file=sys.stderr)
        upload(src, dst)
    print(shlex.join(sub.command), file=sys.stderr, flush=True)
    if sub.watcher is None:  # spark-standalone (client mode) and Beam: the command itself waits
        return subprocess.run(sub.command).returncode
    out = subprocess.run(sub.command, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:  # not a job that failed: told apart from one by this line
        print(out.stdout, end="")
        print(f"submit: {Path(sub.command[0]).name} refused the submission (exit {out.returncode}): nothing was "
              f"started", file=sys.stderr)
        return out.returncode
    try:
        job = sub.watcher.job(json.loads(out.stdout))
    except (json.JSONDecodeError, WatchError) as e:
        print(f"submit: submitted, but could not read the job from the CLI's output ({e}):\n{out.stdout}", file=sys.stderr)
        return 2
    print(f"{job.platform} job {job.job_id} submitted\n  console: {job.console_url}\n  logs:    {job.log_location}",
          file=sys.stderr, flush=True)
    if not wait_for_job:
        return 0
    try:
        return wait(sub.watcher, job, poll_seconds, timeout=wait_timeout)
    except WatchError as e:
        print(f"submit --wait: lost track of {job.job_id}: {e}", file=sys.stderr)
        return 2
    except WaitTimeout as e:
        _stopped_following(job, f"--wait-timeout {wait_timeout:g}: {e}")
        return WAIT_TIMEOUT_EXIT
    except KeyboardInterrupt:
        _stopped_following(job, "interrupted")
        return 130


def _stopped_following(job: Job, why: str) -> None:
    """Only the watching stops: say so, or the user believes the job was cancelled."""
    print(f"\nsubmit --wait: {why}: stopped following {job.job_id}; the job keeps running on {job.platform}\n"
          f"  console: {job.console_url}", file=sys.stderr)


def _arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments, at_least

    add_config_arguments(p)
    p.add_argument("--platform", required=True, choices=SPARK_PLATFORMS + BEAM_PLATFORMS,
                   help="where to run: Spark on Dataproc, Dataproc Serverless, EMR (on EC2), EMR Serverless or a "
                        "standalone master; Beam on Dataflow or Flink")
    p.add_argument("--dry-run", action="store_true", help="print the uploads and the command instead of running them")
    p.add_argument("--wait", action="store_true",
                   help="follow the job until it ends, printing its state, console URL and log location, and exit "
                        "with its status: 0 succeeded, 1 failed or cancelled, 2 lost track of it, 3 nothing submitted "
                        "(dist/ incomplete, an upload refused), 130 Ctrl-C (the job keeps running); a submission the platform's CLI refuses exits with the CLI's status "
                        "(gcloud 1, aws 252-255), saying so; spark-standalone and Beam always wait")
    p.add_argument("--poll-seconds", type=float, help="--wait: seconds between state queries (default submit.poll_seconds)")
    p.add_argument("--wait-timeout", type=at_least(1), metavar="SECONDS",
                   help=f"--wait: stop following after SECONDS without a final state (a job stuck in PENDING) and "
                        f"exit {WAIT_TIMEOUT_EXIT}; the job keeps running (default: no limit)")
    p.add_argument("--dist", default="dist", help="folder `make dist` wrote (default dist/)")
    p.add_argument("--master", help="spark-standalone: master URL (default submit.spark_master)")
    p.add_argument("--from", dest="first", metavar="STAGE", help="passed to `glmdata run` on the cluster")
    p.add_argument("--until", dest="last", metavar="STAGE", help="passed to `glmdata run` on the cluster")
    p.add_argument("--no-report", action="store_true", help="passed to `glmdata run` on the cluster")
    p.add_argument("--py-files", action="append", default=[], metavar="FILE",
                   help="extra Python modules for the driver and executors (e.g. your own stages)")
    p.add_argument("--entry", help="driver script (default: pipeline/cluster_entry.py)")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after `--`: more flags for the submit tool (Spark) or pipeline options (Beam)")


@register_command("submit", None, "submit the pipeline to Dataproc, Dataproc Serverless, EMR, EMR Serverless, a Spark "
                                  "standalone master, Dataflow or Flink (--dry-run prints the command, --wait follows "
                                  "the job)", _arguments)
def submit_command(args: argparse.Namespace) -> int:
    from pipeline.cli import config_from_args
    from pipeline.run_all import build_stages

    args.extra = [a for a in args.extra if a != "--"]
    for path in args.py_files:  # your own stages: their config sections must be known to validate the config
        if path.endswith(".py"):
            sys.path.insert(0, str(Path(path).resolve().parent))
            importlib.import_module(Path(path).stem)
    cfg = config_from_args(args)
    check_engine(cfg, args)
    check_workdir(cfg, args)
    build_stages(cfg, args.first, args.last)  # --from, --until and each stage's checks fail here, not on the cluster
    dist = Path(args.dist).resolve()
    sub = build_submission(cfg, args, dist)
    if args.wait_timeout is not None and not (args.wait and sub.watcher):
        why = (f"add --wait to follow the {args.platform} job" if sub.watcher
               else f"--platform {args.platform} runs in the foreground")
        raise UsageError(f"--wait-timeout: only with --wait, which follows jobs on dataproc, dataproc-serverless, emr "
                         f"and emr-serverless ({why})")
    missing = missing_artifact(sub, dist)
    mismatch = python_mismatch(args.platform, dist)
    if mismatch:
        print(mismatch, file=sys.stderr)
    if args.dry_run:
        if missing:
            print(f"# note: {missing} does not exist yet: run `make dist` before submitting", file=sys.stderr)
        print(sub.describe())
        return 0
    tool = sub.command[0]  # without it, found out only after the uploads (the environment: hundreds of MB)
    problem = (f"{missing} is missing: run `make dist` first" if missing else
               f"{tool} is not on PATH, and --platform {args.platform} submits with it" if not shutil.which(tool) else None)
    if problem:  # 3, as for anything to run first: 2 says a --wait lost track of a job that may be running
        print(f"submit: {problem}; nothing was uploaded or started", file=sys.stderr)
        return 3
    poll = args.poll_seconds if args.poll_seconds is not None else cfg.section("submit").poll_seconds
    return run_submission(sub, args.wait, poll, args.wait_timeout)
