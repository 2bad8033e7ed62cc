"""Messages in the project's terms and quiet logs: the tokenizer's vocabulary error names the config
keys and a size that works, `export --help` says what it does, a stage is one line unless -v, the
tokenizer's sample choice is not called "dropped", Spark starts quiet in local mode, Beam's
harmless warnings are filtered, the manifest's tokenizer path is relative."""
from __future__ import annotations

import logging
import subprocess
import sys

from rich.console import Console

from pipeline.cli import HARMLESS_LOG_MESSAGES, configure_logging
from pipeline.engines.spark_logging import quiet_conf
from pipeline.report import print_summary
from pipeline.report_html import funnel_section
from pipeline.report_terminal import stage_line
from pipeline.stages.shards import relative_path
from pipeline.stages.tokenizer import training_error_hint
from tokenizer.train import TrainSettings

from conftest import REPO

SPM_MESSAGE = ("Internal: trainer_interface.cc(664) [(trainer_spec_.vocab_size()) >= (required_chars_.size())] "
               "Vocabulary size is smaller than required_chars. 2000 vs 2255. Increase vocab_size or decrease "
               "character_coverage with --character_coverage option.")


def test_vocabulary_error_names_the_config_keys_and_a_size_that_works():
    hint = training_error_hint(SPM_MESSAGE, TrainSettings(vocab_size=2000, character_coverage=0.998))
    assert "tokenizer.vocab_size" in hint and "tokenizer.character_coverage" in hint
    assert "at least 3,000" in hint and "2,255 characters" in hint and "--character_coverage" not in hint
    assert training_error_hint("something else", TrainSettings(vocab_size=2000)) == "something else"


def test_demo_config_says_which_settings_suit_only_the_demo():
    lines = (REPO / "configs" / "demo.yaml").read_text().splitlines()
    vocab = next(line for line in lines if line.strip().startswith("vocab_size:"))
    assert "DEMO CORPUS ONLY" in vocab and "32000" in vocab


def test_export_help_says_what_it_does():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "Megatron-LM" in out and ".bin" in out


def _summary(stage: str, **extra) -> dict:
    return {"stage": stage, "engine": "spark", "seconds": 2.0, "in": {"docs": 100, "bytes": 1000},
            "kept": {"docs": 60, "bytes": 600}, "created": {"docs": 0, "bytes": 0},
            "dropped": {"tokenizer_heldout": {"docs": 30, "bytes": 300}, "tokenizer_not_sampled": {"docs": 10, "bytes": 100}},
            "errors": {}, "kept_text_bytes": 600, **extra}


def test_one_line_per_stage_and_the_tokenizer_sample_is_not_dropped():
    line = stage_line(_summary("tokenizer"))
    assert line.startswith("tokenizer: 100 in -> 60 kept (60.0%)") and "not in the training sample" in line
    assert "dropped" not in line and "2.0 s on spark" in line
    assert "dropped: tokenizer_heldout 30" in stage_line(_summary("quality"))
    assert stage_line(_summary("quality", skipped=True)).startswith("quality: skipped")


def test_documents_a_stage_made_are_not_counted_as_received():
    """The mix received what decontaminate kept and made the copies: "356 in" read as the stage before's 356 kept."""
    mix = _summary("mix", **{"in": {"docs": 311, "bytes": 3110}, "created": {"docs": 45, "bytes": 450},
                             "kept": {"docs": 356, "bytes": 3560}, "dropped": {}})
    assert stage_line(mix).startswith("mix: 311 + 45 created in -> 356 kept (100.0%)")
    table = Console(record=True, width=200)
    print_summary({"workdir": "w", "stages": [mix]}, "report.html", table)
    assert "311 + 45 created" in table.export_text()
    assert "<td>311 + 45 created</td>" in funnel_section({"stages": [mix]})


def test_spark_local_mode_is_quiet(monkeypatch):
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    conf = quiet_conf({"spark.driver.extraJavaOptions": "-XX:+UseSerialGC"}, local=True)
    assert conf["spark.ui.showConsoleProgress"] == "false"  # no [Stage N:==>] bars into a log file
    assert conf["spark.driver.extraJavaOptions"].startswith("-XX:+UseSerialGC -Dlog4j2.configurationFile=file:")
    config_file = conf["spark.driver.extraJavaOptions"].split("file:")[1]
    assert "NativeCodeLoader" in open(config_file).read()
    import os

    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert quiet_conf({}, local=False) == {"spark.ui.showConsoleProgress": "false"}  # a cluster logs its own way


def test_harmless_warnings_are_filtered(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging(verbose=False)
        root.warning("apitools not found, and bigquery client libraries are not available")
        root.warning("a real problem")
        logging.getLogger("pipeline.test").info("a glmdata line")
        logging.getLogger("apache_beam.runners").info("Running pipeline with PrismRunner")
    finally:
        root.handlers, root.level = saved
    err = capsys.readouterr().err
    assert HARMLESS_LOG_MESSAGES and "apitools" not in err and "a real problem" in err
    assert "a glmdata line" in err and "PrismRunner" not in err


def test_manifest_tokenizer_path_is_relative():
    assert relative_path("/w/tokenizer/tokenizer.model", "/w/shards") == "../tokenizer/tokenizer.model"
    assert relative_path("gs://b/w/tokenizer/t.model", "gs://b/w/shards") == "../tokenizer/t.model"
    assert relative_path("gs://other/t.model", "gs://b/w/shards") == "gs://other/t.model"
    assert relative_path("/local/t.model", "s3://b/w/shards") == "/local/t.model"


def test_sizes_in_the_terminal_scale_as_on_the_page():
    """A petabyte reads 1.00 PB, not 1,000,000,000.00 (MB), in the stage line, the run table and the per-source
    table (the page writes sizes with the same function)."""
    import io

    from rich.console import Console

    from pipeline.report import print_summary

    petabyte = 10 ** 15
    stage = {**_summary("quality"), "kept_text_bytes": petabyte}
    assert ", 1.00 PB text" in stage_line(stage)
    out = io.StringIO()
    print_summary({"workdir": "wd", "stages": [stage, {**_summary("encode"), "kept_text_bytes": 0}],
                   "sources": {"web": {"stages": {"quality": [60, 2_500_000]}}}}, "wd/report/report.html",
                  Console(file=out, width=200))
    shown = out.getvalue()
    assert "text kept" in shown and "1.00 PB" in shown and "2.50 MB" in shown and "1,000,000,000" not in shown
