"""`glmdata submit`: every platform's dry-run command uses only the flags its CLI documents, values
with spaces and commas arrive as written, the job runs the config the user asked for (--set, --engine)
or submit refuses it first, and `--wait` follows a job through a fake CLI on PATH to the job's exit
status, printing the console URL and the log location.

The documented flags, read in each command's reference page (synopsis), 2026-12-04:
  gcloud dataproc jobs submit pyspark     https://cloud.google.com/sdk/gcloud/reference/dataproc/jobs/submit/pyspark
  gcloud dataproc batches submit pyspark  https://cloud.google.com/sdk/gcloud/reference/dataproc/batches/submit/pyspark
  gcloud-wide flags, dict-flag escaping   https://cloud.google.com/sdk/gcloud/reference  (--format, --project);
                                          https://cloud.google.com/sdk/gcloud/reference/topic/escaping
  aws emr add-steps                       https://docs.aws.amazon.com/cli/latest/reference/emr/add-steps.html
  aws emr describe-step                   https://docs.aws.amazon.com/cli/latest/reference/emr/describe-step.html
  aws emr-serverless start-job-run        https://docs.aws.amazon.com/cli/latest/reference/emr-serverless/start-job-run.html
  EMR Serverless job run states           https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/job-states.html
  EMR step states                         https://docs.aws.amazon.com/emr/latest/APIReference/API_StepStatus.html
  spark-submit options                    https://spark.apache.org/docs/latest/submitting-applications.html
  Beam pipeline options                   https://beam.apache.org/documentation/runners/flink/ and
                                          https://cloud.google.com/dataflow/docs/reference/pipeline-options
                                          (checked by parsing them with the installed apache_beam, which
                                          also validates choices such as --flink_version)
"""
from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from pipeline.cli import main as glmdata
from pipeline.dist import ENV_ARCHIVE, NODE_PYTHON

GCLOUD_WIDE = {"--account", "--billing-project", "--configuration", "--flags-file", "--flatten", "--format", "--help",
               "--impersonate-service-account", "--log-http", "--project", "--quiet", "--trace-token",
               "--user-output-enabled", "--verbosity"}
AWS_GLOBAL = {"--debug", "--endpoint-url", "--no-verify-ssl", "--no-paginate", "--output", "--query", "--profile",
              "--region", "--color", "--no-sign-request", "--ca-bundle", "--cli-read-timeout", "--cli-connect-timeout",
              "--no-cli-pager"}
DOCUMENTED = {
    "gcloud dataproc jobs submit pyspark": GCLOUD_WIDE | {
        "--cluster", "--cluster-labels", "--archives", "--async", "--bucket", "--driver-log-levels",
        "--driver-required-memory-mb", "--driver-required-vcores", "--files", "--jars", "--labels",
        "--max-failures-per-hour", "--max-failures-total", "--properties", "--properties-file", "--py-files", "--region"},
    "gcloud dataproc batches submit pyspark": GCLOUD_WIDE | {
        "--archives", "--async", "--batch", "--container-image", "--deps-bucket", "--files", "--history-server-cluster",
        "--jars", "--kms-key", "--labels", "--metastore-service", "--properties", "--py-files", "--region", "--request-id",
        "--service-account", "--staging-bucket", "--tags", "--ttl", "--user-workload-authentication-type", "--version",
        "--network", "--subnet"},
    "aws emr add-steps": AWS_GLOBAL | {"--cluster-id", "--steps", "--execution-role-arn"},
    "aws emr-serverless start-job-run": AWS_GLOBAL | {
        "--application-id", "--client-token", "--execution-role-arn", "--execution-iam-policy", "--job-driver",
        "--configuration-overrides", "--tags", "--execution-timeout-minutes", "--name", "--mode", "--retry-policy"},
}
SPARK_SUBMIT = {"--master", "--deploy-mode", "--class", "--name", "--jars", "--packages", "--exclude-packages",
                "--repositories", "--py-files", "--files", "--archives", "--conf", "--properties-file",
                "--driver-memory", "--driver-java-options", "--driver-library-path", "--driver-class-path",
                "--executor-memory", "--proxy-user", "--driver-cores", "--total-executor-cores", "--executor-cores",
                "--num-executors", "--queue", "--principal", "--keytab", "--verbose", "--supervise"}
JAVA_OPTIONS = "-XX:+UseG1GC -Dglmdata.note=a,b#c"  # a space, a comma and a hash: each must arrive as written
PLATFORMS = ("dataproc", "dataproc-serverless", "emr", "emr-serverless", "spark-standalone", "dataflow", "flink")


def write_config(tmp_path: Path, scheme: str = "gs", **submit) -> Path:
    artifacts = f"{scheme}://glmdata-test/dist" if scheme else str(tmp_path / "artifacts")
    cfg = {"run": {"workdir": f"{scheme or 's3'}://glmdata-test/work", "engine": "spark",
                   "spark": {"master": "", "conf": {"spark.executor.cores": "4",
                                                     "spark.executor.extraJavaOptions": JAVA_OPTIONS}}},
           "submit": {"artifacts": artifacts, "region": "us-central1", "project": "proj", "dataproc_cluster": "glmdata",
                      "dataproc_serverless_image": "us-docker.pkg.dev/proj/repo/glmdata:1",
                      "emr_cluster_id": "j-1ABCDEFGHIJK", "emr_serverless_application_id": "00abc123",
                      "emr_serverless_role_arn": "arn:aws:iam::123456789012:role/glmdata",
                      "dataflow_image": "us-docker.pkg.dev/proj/repo/glmdata-beam:1", "poll_seconds": 0, **submit},
           "mix": {"sources": [{"name": "web", "lang": "en"}, {"name": "zhweb", "lang": "zh"}], "target_tokens": 1000}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(capsys, cfg: Path, platform: str, *extra: str) -> tuple[list[str], str]:
    code = glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dry-run", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    line = out.strip().splitlines()[-1]
    return shlex.split(line), out


def flags(argv: list[str]) -> set[str]:
    """--name of every --name=value / --name value argument before a bare `--`."""
    out = set()
    for arg in argv[: argv.index("--")] if "--" in argv else argv:
        if arg.startswith("--"):
            out.add(arg.split("=", 1)[0])
    return out


def spark_submit_flags(argv: list[str]) -> set[str]:
    """flags() of a spark-submit command line: those before the application (the entry script)."""
    return flags(argv[:next(i for i, a in enumerate(argv) if a.endswith("cluster_entry.py"))])


def gcloud_properties(value: str) -> dict[str, str]:
    delimiter = ","
    if value.startswith("^"):
        delimiter, value = value[1], value[3:]
    return dict(p.split("=", 1) for p in value.split(delimiter))


def option(argv: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith(name + "="))


@pytest.mark.parametrize("platform", ["dataproc", "dataproc-serverless"])
def test_gcloud_commands_use_documented_flags_and_keep_values_whole(tmp_path, capsys, platform):
    argv, _ = dry_run(capsys, write_config(tmp_path), platform)
    name = " ".join(argv[:5])
    assert name == f"gcloud dataproc {'jobs' if platform == 'dataproc' else 'batches'} submit pyspark"
    assert flags(argv) <= DOCUMENTED[name], flags(argv) - DOCUMENTED[name]
    assert {"--async", "--format"} <= flags(argv), "returns at once with the job as JSON, for --wait"
    props = gcloud_properties(option(argv, "--properties"))
    assert props["spark.executor.extraJavaOptions"] == JAVA_OPTIONS
    assert argv[argv.index("--") + 1:] == ["run", "--config", "cluster.yaml"]
    if platform == "dataproc":
        assert option(argv, "--archives").endswith(f"/{ENV_ARCHIVE}#environment")
        assert props["spark.pyspark.python"] == "./environment/bin/python"
    else:
        assert option(argv, "--container-image") == "us-docker.pkg.dev/proj/repo/glmdata:1"
        assert option(argv, "--version") == "2.2" and option(argv, "--batch").startswith("glmdata-")
        assert props["spark.pyspark.python"] == props["spark.pyspark.driver.python"] == NODE_PYTHON


def test_emr_step_uses_documented_flags_and_spark_submit_options(tmp_path, capsys):
    argv, out = dry_run(capsys, write_config(tmp_path, "s3"), "emr")
    assert flags(argv) <= DOCUMENTED["aws emr add-steps"]
    (step,) = json.loads(argv[argv.index("--steps") + 1])
    args = step["Args"]
    assert args[0] == "spark-submit" and step["Jar"] == "command-runner.jar"
    assert spark_submit_flags(args) <= SPARK_SUBMIT, spark_submit_flags(args) - SPARK_SUBMIT
    assert f"spark.executor.extraJavaOptions={JAVA_OPTIONS}" in args  # one argument, as written
    assert args[-3:] == ["run", "--config", "cluster.yaml"]
    assert f"# upload {Path('dist').resolve() / ENV_ARCHIVE}" in out


def test_emr_serverless_settings_travel_as_json(tmp_path, capsys):
    argv, out = dry_run(capsys, write_config(tmp_path, "s3"), "emr-serverless", "--", "--conf", "spark.x=a b")
    assert flags(argv) <= DOCUMENTED["aws emr-serverless start-job-run"]
    driver = json.loads(argv[argv.index("--job-driver") + 1])["sparkSubmit"]
    overrides = json.loads(argv[argv.index("--configuration-overrides") + 1])
    (defaults,) = overrides["applicationConfiguration"]
    assert defaults["classification"] == "spark-defaults"
    assert defaults["properties"]["spark.executor.extraJavaOptions"] == JAVA_OPTIONS
    assert defaults["properties"]["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == NODE_PYTHON
    params = shlex.split(driver["sparkSubmitParameters"])
    assert params[-2:] == ["--conf", "spark.x=a b"], "the user's argument with a space stays one argument"
    assert flags(params) <= SPARK_SUBMIT
    assert overrides["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"] == "s3://glmdata-test/dist/logs/"
    assert ENV_ARCHIVE not in out, "the environment is the application's image, not an archive"


def test_spark_standalone_uses_spark_submit_options(tmp_path, capsys):
    argv, _ = dry_run(capsys, write_config(tmp_path), "spark-standalone")
    assert spark_submit_flags(argv) <= SPARK_SUBMIT
    assert f"spark.executor.extraJavaOptions={JAVA_OPTIONS}" in argv


def test_spark_standalone_archive_in_a_folder_with_spaces_is_a_file_uri(tmp_path, capsys):
    """spark-submit parses --archives as a java.net.URI: "/my dist/x.tar.gz#environment" is no URI, so
    it took the whole text, fragment included, as a file name (spark-submit 4.x, local[1]:
    NoSuchFileException); the percent-encoded file: URI unpacks as ./environment (checked the same way)."""
    dist = tmp_path / "my dist 配置"
    argv, _ = dry_run(capsys, write_config(tmp_path), "spark-standalone", "--dist", str(dist))
    archive = urlsplit(argv[argv.index("--archives") + 1])
    assert (archive.scheme, archive.fragment) == ("file", "environment")
    assert unquote(archive.path) == str(dist / ENV_ARCHIVE) and archive.geturl().isascii() and " " not in archive.path


@pytest.mark.parametrize("platform", ["dataflow", "flink"])
def test_beam_options_are_known_to_beam(tmp_path, capsys, platform):
    from apache_beam.options.pipeline_options import PipelineOptions

    argv, _ = dry_run(capsys, write_config(tmp_path), platform)
    options = json.loads(option(argv, "run.beam.options"))
    parsed = PipelineOptions(options).get_all_options()  # exits on a choice Beam does not offer
    for opt in options:
        name, value = opt[2:].split("=", 1)
        assert str(parsed[name]) == value, (name, parsed.get(name))
    if platform == "dataflow":
        assert parsed["sdk_container_image"] == "us-docker.pkg.dev/proj/repo/glmdata-beam:1"
        assert parsed["sdk_location"] == "container" and not parsed["extra_packages"]
    else:
        assert (parsed["flink_version"], parsed["environment_type"]) == ("1.19", "DOCKER")
        assert parsed["environment_config"] == "us-docker.pkg.dev/proj/repo/glmdata-beam:1"


@pytest.mark.parametrize("platform,key", [("dataproc-serverless", "dataproc_serverless_image"),
                                          ("dataflow", "dataflow_image"), ("emr", "emr_cluster_id"),
                                          ("dataproc", "region"), ("dataproc-serverless", "region"),
                                          ("dataflow", "region")])
def test_missing_setting_names_file_and_key(tmp_path, capsys, platform, key):
    cfg = write_config(tmp_path, "s3", **{key: ""})
    assert glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dry-run"]) == 2
    assert f"{cfg}: submit.{key}:" in capsys.readouterr().err


def job_arguments(argv: list[str], platform: str) -> list[str]:
    """The `glmdata run ...` arguments of the job a dry run prints."""
    if platform == "emr":
        argv = json.loads(argv[argv.index("--steps") + 1])[0]["Args"]
    if platform == "emr-serverless":
        return json.loads(argv[argv.index("--job-driver") + 1])["sparkSubmit"]["entryPointArguments"]
    return argv[next(i for i in range(len(argv)) if argv[i:i + 2] == ["run", "--config"]):]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_job_runs_the_effective_config(tmp_path, capsys, monkeypatch, platform):
    """--set items and --engine reach `glmdata run` in the job, which then loads the config the user asked for."""
    from pipeline.cli import build_parser, config_from_args

    engine = "beam" if platform in ("dataflow", "flink") else "spark"
    argv, _ = dry_run(capsys, write_config(tmp_path), platform, "--engine", engine, "--until", "dedup",
                      "--set", "dedup.threshold=0.7", "--set", "run.workdir=gs://other/work a,b")
    monkeypatch.chdir(tmp_path)  # where the cluster finds the uploaded config (--files)
    job = config_from_args(build_parser().parse_args(job_arguments(argv, platform)))
    assert (job.section("dedup").threshold, job.run.workdir, job.run.engine) == (0.7, "gs://other/work a,b", engine)
    assert job_arguments(argv, platform)[3:5] == ["--until", "dedup"]


@pytest.mark.parametrize("platform,extra,message", [
    ("dataproc", ["--engine", "beam"], "--engine beam, but --platform dataproc runs the spark engine"),
    ("emr", ["--set", "run.engine=beam"], "run.engine is beam, but --platform emr runs the spark engine"),
    ("dataflow", ["--engine", "spark"], "--engine spark, but --platform dataflow runs the beam engine"),
    ("dataproc", ["--from", "dedupe"], "--from dedupe: not a stage; expected one of: ingest,"),
    ("spark-standalone", ["--from", "mix", "--until", "dedup"], "--from mix comes after --until dedup"),
    ("emr-serverless", ["--set", "dedup.threshold=1.5"], "dedup: threshold: expected a number between 0 and 1"),
    ("dataproc", ["--set", "mix={sources: [{name: web, lang: en}], target_tokens: 1000, language_shares: {en: 1}}"],
     "tokenizer.language_shares: asks for {'en': 0.5, 'zh': 0.5}, but the mix has no zh documents"),
    ("dataproc", ["--wait-timeout", "60"], "--wait-timeout: only with --wait"),
    ("flink", ["--wait", "--wait-timeout", "60"], "--platform flink runs in the foreground"),
])
def test_refused_before_submitting(tmp_path, capsys, platform, extra, message):
    """An engine the platform does not run, a bad --from/--until or a setting a stage refuses fails
    here, not on the cluster once it has started."""
    cfg = write_config(tmp_path)
    assert glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dry-run", *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and not captured.out


# --------------------------------------------------------------------------------------------
# --wait against a fake CLI

FAKE_CLI = r'''#!{python}
"""gcloud / aws stand-in: answers the calls `glmdata submit --wait` makes with the documented JSON
shapes; describe calls report RUNNING first, then $FAKE_FINAL."""
import json, os, sys
from pathlib import Path

log = Path(os.environ["FAKE_LOG"])
with log.open("a") as f:
    f.write(json.dumps([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\n")
args = " ".join(sys.argv[1:])
polls = Path(os.environ["FAKE_LOG"] + ".polls")


def state(running, final):
    n = int(polls.read_text()) if polls.exists() else 0
    polls.write_text(str(n + 1))
    return running if n == 0 else final

final = os.environ["FAKE_FINAL"]
reason = os.environ.get("FAKE_REASON", "")  # in each platform's field for why a job ended
if "submit" in args or "add-steps" in args or "start-job-run" in args:
    if os.environ.get("FAKE_REFUSE"):  # the CLI's own refusal: its message and status (aws: 252-255)
        sys.exit(print("An error occurred (ValidationException): bad request", file=sys.stderr) or 252)
if args.startswith("dataproc jobs submit"):
    out = {{"reference": {{"jobId": "job-123", "projectId": "proj"}}, "status": {{"state": "PENDING"}}}}
elif args.startswith("dataproc jobs describe"):
    out = {{"status": {{"state": state("RUNNING", final), "details": reason}}, "driverOutputResourceUri": "gs://b/google-cloud-dataproc-metainfo/job-123/driveroutput"}}
elif args.startswith("dataproc batches submit"):
    out = {{"name": "projects/proj/locations/us-central1/operations/op-1"}}
elif args.startswith("dataproc batches describe"):
    out = {{"state": state("RUNNING", final), "stateMessage": reason, "runtimeInfo": {{"outputUri": "gs://b/batch-output"}}}}
elif args.startswith("emr add-steps"):
    out = {{"StepIds": ["s-STEP1"]}}
elif args.startswith("emr describe-cluster"):
    out = {{"Cluster": {{"Id": "j-1ABCDEFGHIJK", "LogUri": "s3n://logs-bucket/emr/"}}}}
elif args.startswith("emr describe-step"):
    out = {{"Step": {{"Id": "s-STEP1", "Status": {{"State": state("RUNNING", final),
                                                "FailureDetails": {{"Message": reason}}}}}}}}
elif args.startswith("emr-serverless start-job-run"):
    out = {{"applicationId": "00abc123", "jobRunId": "00run456", "arn": "arn:aws:emr-serverless:x"}}
elif args.startswith("emr-serverless get-job-run"):
    out = {{"jobRun": {{"state": state("RUNNING", final), "stateDetails": reason}}}}
else:
    sys.exit("fake cli: unexpected call " + args)
print(json.dumps(out))
'''

WAIT_CASES = {  # platform: (success state, failure state, console URL piece, log location)
    "dataproc": ("DONE", "ERROR", "https://console.cloud.google.com/dataproc/jobs/job-123?region=us-central1&project=proj",
                 "gs://b/google-cloud-dataproc-metainfo/job-123/driveroutput"),
    "dataproc-serverless": ("SUCCEEDED", "FAILED", "https://console.cloud.google.com/dataproc/batches/us-central1/glmdata-",
                            "gs://b/batch-output"),
    "emr": ("COMPLETED", "FAILED", "#/clusterDetails/j-1ABCDEFGHIJK", "s3://logs-bucket/emr/j-1ABCDEFGHIJK/steps/s-STEP1/"),
    "emr-serverless": ("SUCCESS", "FAILED", "application 00abc123, job run 00run456",
                       "/logs/applications/00abc123/jobs/00run456/"),
}


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(FAKE_CLI.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "aws").symlink_to(script)
    log = tmp_path / "cli.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


@pytest.mark.parametrize("outcome", ["success", "failure"])
@pytest.mark.parametrize("platform", list(WAIT_CASES))
def test_wait_follows_the_job_to_its_exit_status(tmp_path, capsys, monkeypatch, fake_cli, platform, outcome):
    ok, failed, console, logs = WAIT_CASES[platform]
    monkeypatch.setenv("FAKE_FINAL", ok if outcome == "success" else failed)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / ENV_ARCHIVE).write_bytes(b"archive")
    cfg = write_config(tmp_path, scheme="")  # artifacts in a local folder: uploads need no credentials
    code = glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dist", str(dist), "--wait"])
    err = capsys.readouterr().err
    assert code == (0 if outcome == "success" else 1), err
    calls = [json.loads(line) for line in fake_cli.read_text().splitlines()]
    describes = [c for c in calls if any(w in c for w in ("describe", "describe-step", "get-job-run"))]
    assert len(describes) == 2, calls  # RUNNING, then the final state
    assert "RUNNING" in err and f"finished {ok if outcome == 'success' else failed}" in err
    assert console in err and logs in err
    assert (tmp_path / "artifacts" / "cluster.yaml").exists(), "the config was uploaded before submitting"


def test_submit_without_wait_reports_the_job_and_returns(tmp_path, capsys, monkeypatch, fake_cli):
    monkeypatch.setenv("FAKE_FINAL", "SUCCESS")
    cfg = write_config(tmp_path, scheme="")
    assert glmdata(["submit", "--platform", "emr-serverless", "--config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "job 00run456 submitted" in err and "/jobs/00run456/" in err
    assert not any("get-job-run" in line for line in fake_cli.read_text().splitlines())


def test_flink_on_beams_image_ships_the_wheel_or_stops(tmp_path, capsys):
    """Without an image of its own, Flink's workers install the glmdata wheel at start: submitting
    without it would run workers that cannot import the project."""
    cfg = write_config(tmp_path, dataflow_image="")
    dist = tmp_path / "dist"
    assert glmdata(["submit", "--platform", "flink", "--config", str(cfg), "--dist", str(dist)]) == 3
    assert "glmdata-*.whl is missing: run `make dist` first" in capsys.readouterr().err
    (dist / "wheelhouse").mkdir(parents=True)
    (dist / "wheelhouse" / "glmdata-1.0-py3-none-any.whl").write_bytes(b"wheel")
    argv, _ = dry_run(capsys, cfg, "flink", "--dist", str(dist))
    assert f"--extra_package={dist / 'wheelhouse' / 'glmdata-1.0-py3-none-any.whl'}" in json.loads(
        option(argv, "run.beam.options"))


@pytest.mark.parametrize("platform", ["dataproc", "dataproc-serverless", "emr", "emr-serverless", "dataflow"])
@pytest.mark.parametrize("given,named", [
    (["run.workdir={}"], "--set run.workdir"),
    (["run={{workdir: {}, engine: spark}}"], "--set run: run.workdir"),
    (["run.workdir=gs://other/work", "run={{workdir: {}, engine: spark}}"], "--set run: run.workdir"),
    (["run.workdir=gs://a/work", "run={{workdir: gs://b/work}}", "run.workdir={}"], "--set run.workdir"),
    ([], "cluster.yaml: run.workdir")], ids=["set-key", "set-mapping", "set-key-then-mapping", "last-set-wins", "yaml"])
def test_local_workdir_is_refused_on_a_cluster(tmp_path, capsys, platform, given, named):
    """Each node would write its own disk: refused before submitting, naming where the workdir was given
    (a --set of the whole run mapping is a --set too, not the YAML, and replaces an earlier --set inside it)."""
    workdir = tmp_path / "work"
    cfg = write_config(tmp_path)
    if not given:
        cfg.write_text(cfg.read_text().replace("gs://glmdata-test/work", str(workdir)))
    code = glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dry-run",
                    *(arg for item in given for arg in ("--set", item.format(workdir)))])
    captured = capsys.readouterr()
    assert code == 2 and not captured.out
    assert f"{named}: {workdir} is a local path, but --platform {platform}" in captured.err


@pytest.mark.parametrize("platform", ["dataproc", "dataproc-serverless", "emr", "emr-serverless"])
def test_config_named_with_spaces_uploads_under_a_uri_safe_name(tmp_path, capsys, platform):
    """spark-submit parses --files as a java.net.URI: "s3://b/my run 配置.yaml" fails there (checked with
    spark-submit 3.5: URISyntaxException), so the config travels under a name without such characters,
    and the job's --config names that upload."""
    cfg = write_config(tmp_path, "s3" if platform.startswith("emr") else "gs")
    named = cfg.rename(tmp_path / "my run 配置.yaml")
    argv, out = dry_run(capsys, named, platform)
    uploaded = next(line.split(" -> ")[1] for line in out.splitlines() if line.startswith(f"# upload {named}"))
    assert uploaded.endswith("/my_run___.yaml")
    assert job_arguments(argv, platform)[:3] == ["run", "--config", "my_run___.yaml"]
    assert uploaded in json.dumps(argv, ensure_ascii=False) and " " not in uploaded


@pytest.mark.parametrize("names,uploaded", [(("a/deps.zip", "b/deps.zip"), "deps.zip"),
                                            (("my deps.zip", "my_deps.zip"), "my_deps.zip")])
def test_two_files_uploading_under_one_name_are_refused(tmp_path, capsys, names, uploaded):
    """The second upload would overwrite the first in submit.artifacts: refused, naming both files."""
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    py_files = [arg for path in paths for arg in ("--py-files", str(path))]
    code = glmdata(["submit", "--platform", "dataproc", "--config", str(write_config(tmp_path)), "--dry-run", *py_files])
    captured = capsys.readouterr()
    assert code == 2 and not captured.out
    assert f"glmdata submit: error: {paths[0]} and {paths[1]} would both upload as {uploaded}:" in captured.err


def test_batch_ids_differ_within_one_second(monkeypatch):
    """Two Dataproc Serverless submissions in the same second got the same batch id (the second failed
    with ALREADY_EXISTS); each id stays within batches.create's batchId rules (4-63 of a-z, 0-9, -)."""
    from pipeline import submit

    frozen = time.gmtime(1_800_000_000)
    monkeypatch.setattr(submit.time, "gmtime", lambda *_: frozen)
    ids = {submit.batch_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]{2,61}[a-z0-9]", i) for i in ids), ids


def test_artifacts_folder_spark_cannot_take_as_a_uri_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path, artifacts="gs://glmdata-test/my dist")
    assert glmdata(["submit", "--platform", "dataproc", "--config", str(cfg), "--dry-run"]) == 2
    assert "submit.artifacts: 'gs://glmdata-test/my dist' holds ' '" in capsys.readouterr().err


@pytest.mark.parametrize("final", ["failure", "cancelled"])
@pytest.mark.parametrize("platform", list(WAIT_CASES))
def test_wait_prints_why_the_job_ended(tmp_path, capsys, monkeypatch, fake_cli, platform, final):
    """A failed or cancelled job's exit 1 comes with the platform's own reason, not only its state."""
    state = WAIT_CASES[platform][1] if final == "failure" else "CANCELLED"  # the same word on all four
    monkeypatch.setenv("FAKE_FINAL", state)
    monkeypatch.setenv("FAKE_REASON", "Container killed: exit code 127 (no python3.12 on this node)")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / ENV_ARCHIVE).write_bytes(b"archive")
    cfg = write_config(tmp_path, scheme="")
    code = glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dist", str(dist), "--wait"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"finished {state} (exit 1)\n  reason:  Container killed: exit code 127 (no python3.12 on this node)" in err


@pytest.mark.parametrize("platform,built,warned", [("dataproc", "3.12", True), ("emr", "3.12", True),
                                                   ("dataproc", "3.11", False), ("emr", "3.11", False),
                                                   ("emr-serverless", "3.12", False)])  # the image has the dist's Python
def test_dist_python_the_nodes_lack_is_warned_before_submitting(tmp_path, capsys, platform, built, warned):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / ENV_ARCHIVE).write_bytes(b"archive")
    (dist / "dist.json").write_text(json.dumps({"target": {"python": built}}))
    cfg = write_config(tmp_path, "s3" if platform.startswith("emr") else "gs")
    assert glmdata(["submit", "--platform", platform, "--config", str(cfg), "--dist", str(dist), "--dry-run"]) == 0
    err = capsys.readouterr().err
    message = f"dist.json was built for CPython {built}, but --platform {platform} nodes have Python"
    assert (message in err) == warned, err


@pytest.mark.parametrize("content", ['{"target": {"pyth', '{"built": "today"}'])
def test_a_damaged_dist_manifest_is_a_warning_not_a_traceback(tmp_path, capsys, content):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / ENV_ARCHIVE).write_bytes(b"archive")
    (dist / "dist.json").write_text(content)
    cfg = write_config(tmp_path, "gs")
    assert glmdata(["submit", "--platform", "dataproc", "--config", str(cfg), "--dist", str(dist), "--dry-run"]) == 0
    assert "dist.json cannot be read" in capsys.readouterr().err


def test_a_submission_the_cli_refuses_says_so_with_the_clis_status(tmp_path, capsys, monkeypatch, fake_cli):
    monkeypatch.setenv("FAKE_FINAL", "SUCCESS")
    monkeypatch.setenv("FAKE_REFUSE", "1")
    cfg = write_config(tmp_path, scheme="")
    assert glmdata(["submit", "--platform", "emr-serverless", "--config", str(cfg), "--wait"]) == 252
    assert "submit: aws refused the submission (exit 252): nothing was started" in capsys.readouterr().err


def test_interrupted_wait_says_the_job_keeps_running(tmp_path, capsys, monkeypatch, fake_cli):
    from pipeline import job_watch

    def interrupted(command):
        raise KeyboardInterrupt

    monkeypatch.setenv("FAKE_FINAL", "SUCCESS")
    monkeypatch.setattr(job_watch, "_cli_json", interrupted)
    cfg = write_config(tmp_path, scheme="")
    assert glmdata(["submit", "--platform", "emr-serverless", "--config", str(cfg), "--wait"]) == 130
    err = capsys.readouterr().err
    assert "stopped following 00run456; the job keeps running on emr-serverless" in err and "Traceback" not in err


def test_wait_timeout_stops_following_a_pending_job(tmp_path, capsys, monkeypatch, fake_cli):
    """A job stuck in PENDING: --wait-timeout stops the watching, says the job keeps running with its
    console URL, and exits with the status --help gives."""
    monkeypatch.setenv("FAKE_FINAL", "PENDING")
    cfg = write_config(tmp_path, scheme="")
    code = glmdata(["submit", "--platform", "emr-serverless", "--config", str(cfg), "--wait", "--wait-timeout", "1",
                    "--poll-seconds", "0.2"])
    err = capsys.readouterr().err
    assert code == 124, err
    assert "--wait-timeout 1: still PENDING after 1 s: stopped following 00run456; the job keeps running" in err
    assert "console: https://" in err.split("stopped following")[-1]
    with pytest.raises(SystemExit):
        glmdata(["submit", "--help"])
    assert "exit 124" in " ".join(capsys.readouterr().out.split())
