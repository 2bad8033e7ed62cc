"""`glmdata submit --wait`: follow a submitted cluster job to its end through the platform's CLI.

Why the CLIs (gcloud, aws) and not their Python SDKs: the CLI is what submits the job (the command
`--dry-run` prints is exactly what runs), it is already installed and authenticated wherever a user
submits from (gcloud auth / aws configure or SSO, with their profiles and regions), every call used
here is a documented command with JSON output, and the SDKs (google-cloud-dataproc, boto3) would add
their dependency trees for four read-only calls. Tests substitute a fake CLI on PATH.

Each watcher knows, for one platform: the job id in the submit command's JSON output, the command
that describes the job, where the state is in its JSON, which states are final (and with which exit
code), the console URL and where the driver's log is written.

    gcloud dataproc jobs describe       https://cloud.google.com/sdk/gcloud/reference/dataproc/jobs/describe
    gcloud dataproc batches describe    https://cloud.google.com/sdk/gcloud/reference/dataproc/batches/describe
    aws emr describe-step               https://docs.aws.amazon.com/cli/latest/reference/emr/describe-step.html
    aws emr-serverless get-job-run      https://docs.aws.amazon.com/cli/latest/reference/emr-serverless/get-job-run.html
"""
from __future__ import annotations

import json
import posixpath
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO


class WatchError(RuntimeError):
    """The job could not be followed (the CLI failed or answered something unexpected)."""


class WaitTimeout(RuntimeError):
    """The job reached no final state within --wait-timeout (it goes on running)."""


@dataclass
class Job:
    platform: str
    job_id: str
    console_url: str
    log_location: str


def _cli_json(command: list[str]) -> dict:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise WatchError(f"`{' '.join(command[:4])} ...` exited with {out.returncode}: {out.stderr.strip()[-2000:]}")
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise WatchError(f"`{' '.join(command[:4])} ...` did not print JSON ({e}): {out.stdout[:500]!r}") from e


def _dig(doc: dict, *keys: str) -> str:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc if isinstance(doc, str) else ""


class Watcher:
    """One platform's describe command and state machine."""

    platform = ""
    final: dict[str, int] = {}  # final state -> exit code of `glmdata submit --wait`

    def job(self, submit_output: dict) -> Job:
        raise NotImplementedError

    def describe(self, job: Job) -> list[str]:
        raise NotImplementedError

    def state(self, doc: dict) -> str:
        raise NotImplementedError

    def log_location(self, doc: dict, job: Job) -> str:
        """Where the driver's log is, once the description tells (default: known at submit)."""
        return job.log_location

    def reason(self, doc: dict) -> str:
        """Why the job ended as it did, in the platform's words (empty when it gives none)."""
        return ""


@dataclass
class DataprocJobWatcher(Watcher):
    """A job on a Dataproc cluster (`gcloud dataproc jobs submit pyspark --async`)."""

    region: str
    project: str
    platform = "dataproc"
    final = {"DONE": 0, "ERROR": 1, "CANCELLED": 1}

    def _flags(self) -> list[str]:
        return [f"--region={self.region}", *([f"--project={self.project}"] if self.project else []), "--format=json"]

    def job(self, submit_output: dict) -> Job:
        job_id = _dig(submit_output, "reference", "jobId")
        if not job_id:
            raise WatchError(f"no reference.jobId in the submit output: {json.dumps(submit_output)[:500]}")
        project = self.project or _dig(submit_output, "reference", "projectId")
        return Job(self.platform, job_id,
                   f"https://console.cloud.google.com/dataproc/jobs/{job_id}?region={self.region}&project={project}",
                   _dig(submit_output, "driverOutputResourceUri") or "the job's driver output (gcloud dataproc jobs wait)")

    def describe(self, job: Job) -> list[str]:
        return ["gcloud", "dataproc", "jobs", "describe", job.job_id, *self._flags()]

    def state(self, doc: dict) -> str:
        return _dig(doc, "status", "state")

    def log_location(self, doc: dict, job: Job) -> str:
        return _dig(doc, "driverOutputResourceUri") or job.log_location

    def reason(self, doc: dict) -> str:
        return _dig(doc, "status", "details")  # JobStatus.details: the error description of an ERROR


@dataclass
class DataprocBatchWatcher(Watcher):
    """A Dataproc Serverless batch (`gcloud dataproc batches submit pyspark --batch=ID --async`)."""

    region: str
    project: str
    batch_id: str
    platform = "dataproc-serverless"
    final = {"SUCCEEDED": 0, "FAILED": 1, "CANCELLED": 1}

    def job(self, submit_output: dict) -> Job:
        project = self.project or "<your project>"
        return Job(self.platform, self.batch_id,
                   f"https://console.cloud.google.com/dataproc/batches/{self.region}/{self.batch_id}?project={project}",
                   "Cloud Logging: resource.type=cloud_dataproc_batch, "
                   f"resource.labels.batch_id={self.batch_id}")

    def describe(self, job: Job) -> list[str]:
        return ["gcloud", "dataproc", "batches", "describe", job.job_id, f"--region={self.region}",
                *([f"--project={self.project}"] if self.project else []), "--format=json"]

    def state(self, doc: dict) -> str:
        return _dig(doc, "state")

    def log_location(self, doc: dict, job: Job) -> str:
        output = _dig(doc, "runtimeInfo", "outputUri")  # the driver's output, once the batch runs
        return f"{output} (driver output); {job.log_location}" if output else job.log_location

    def reason(self, doc: dict) -> str:
        return _dig(doc, "stateMessage")  # Batch.stateMessage


@dataclass
class EmrStepWatcher(Watcher):
    """A step on an EMR cluster (`aws emr add-steps`)."""

    cluster_id: str
    region: str
    platform = "emr"
    final = {"COMPLETED": 0, "FAILED": 1, "CANCELLED": 1, "INTERRUPTED": 1}

    def _flags(self) -> list[str]:
        return [*(["--region", self.region] if self.region else []), "--output", "json"]

    def job(self, submit_output: dict) -> Job:
        steps = submit_output.get("StepIds") or []
        if len(steps) != 1:
            raise WatchError(f"expected one step id in the add-steps output, got {steps!r}")
        cluster = _cli_json(["aws", "emr", "describe-cluster", "--cluster-id", self.cluster_id, *self._flags()])
        log_uri = _dig(cluster, "Cluster", "LogUri")
        logs = (posixpath.join(log_uri.replace("s3n://", "s3://"), self.cluster_id, "steps", steps[0]) + "/" if log_uri
                else f"/mnt/var/log/hadoop/steps/{steps[0]}/ on the primary node (the cluster has no LogUri)")
        region = self.region or "us-east-1"
        return Job(self.platform, steps[0],
                   f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{self.cluster_id}",
                   logs)

    def describe(self, job: Job) -> list[str]:
        return ["aws", "emr", "describe-step", "--cluster-id", self.cluster_id, "--step-id", job.job_id, *self._flags()]

    def state(self, doc: dict) -> str:
        return _dig(doc, "Step", "Status", "State")

    def reason(self, doc: dict) -> str:
        failure = " ".join(filter(None, [_dig(doc, "Step", "Status", "FailureDetails", key)
                                         for key in ("Reason", "Message")]))
        log = _dig(doc, "Step", "Status", "FailureDetails", "LogFile")
        return (f"{failure} (log: {log})" if log else failure) or _dig(doc, "Step", "Status", "StateChangeReason", "Message")


@dataclass
class EmrServerlessWatcher(Watcher):
    """A job run of an EMR Serverless application (`aws emr-serverless start-job-run`)."""

    application_id: str
    region: str
    log_uri: str  # the job's monitoringConfiguration.s3MonitoringConfiguration.logUri
    platform = "emr-serverless"
    final = {"SUCCESS": 0, "FAILED": 1, "CANCELLED": 1}

    def _flags(self) -> list[str]:
        return [*(["--region", self.region] if self.region else []), "--output", "json"]

    def job(self, submit_output: dict) -> Job:
        run_id = _dig(submit_output, "jobRunId")
        if not run_id:
            raise WatchError(f"no jobRunId in the start-job-run output: {json.dumps(submit_output)[:500]}")
        region = self.region or "us-east-1"
        # Logs layout: <logUri>/applications/<application-id>/jobs/<job-run-id>/ (EMR Serverless user guide,
        # "Storing logs": docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/logging.html).
        return Job(self.platform, run_id,
                   f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/serverless "
                   f"(application {self.application_id}, job run {run_id}; Spark UI: aws emr-serverless "
                   f"get-dashboard-for-job-run --application-id {self.application_id} --job-run-id {run_id})",
                   posixpath.join(self.log_uri, "applications", self.application_id, "jobs", run_id) + "/")

    def describe(self, job: Job) -> list[str]:
        return ["aws", "emr-serverless", "get-job-run", "--application-id", self.application_id,
                "--job-run-id", job.job_id, *self._flags()]

    def state(self, doc: dict) -> str:
        return _dig(doc, "jobRun", "state")

    def reason(self, doc: dict) -> str:
        return _dig(doc, "jobRun", "stateDetails")


def wait(watcher: Watcher, job: Job, poll_seconds: float, out: TextIO | None = None,
         sleep: Callable[[float], None] = time.sleep, max_cli_failures: int = 3, timeout: float | None = None) -> int:
    """Poll until the job reaches a final state, printing each new state (to stderr by default);
    return its exit code. WaitTimeout when `timeout` seconds pass first (a job stuck in PENDING)."""
    out = out or sys.stderr
    started, last, failures = time.monotonic(), None, 0
    while True:
        try:
            doc = _cli_json(watcher.describe(job))
            failures = 0
        except WatchError as e:
            failures += 1
            if failures >= max_cli_failures:
                raise
            print(f"submit --wait: {e} (retrying)", file=out, flush=True)
            sleep(poll_seconds)
            continue
        state = watcher.state(doc)
        if state != last:
            print(f"[{time.monotonic() - started:7.0f} s] {job.platform} {job.job_id}: {state or '(no state)'}",
                  file=out, flush=True)
            last = state
        if state in watcher.final:
            code = watcher.final[state]
            reason = watcher.reason(doc)
            print(f"{job.platform} {job.job_id} finished {state} (exit {code})\n"
                  + (f"  reason:  {reason}\n" if reason else "")
                  + f"  console: {job.console_url}\n  logs:    {watcher.log_location(doc, job)}", file=out, flush=True)
            return code
        elapsed = time.monotonic() - started
        if timeout is not None and elapsed >= timeout:
            raise WaitTimeout(f"still {state or '(no state)'} after {elapsed:.0f} s")
        sleep(poll_seconds if timeout is None else min(poll_seconds, timeout - elapsed))
