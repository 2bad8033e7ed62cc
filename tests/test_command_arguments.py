"""Commands' bad arguments and inputs get a message naming what was wrong, never a traceback or a silent
default: quality train-lm / train-classifier, tokenizer eval, shards verify, the runner's "run X first",
an unknown quality.sources entry and a mix.weight_column no input has."""
from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.cli import main
from pipeline.config import ConfigError
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import StageRun

from conftest import make_run_config, write_finished_stage
from test_mix import make_docs, mix_section
from test_tokenizer import tiny_model  # noqa: F401 (fixture: a small model trained on the shared text)


def flat(text: str) -> str:
    """Help and console output with its line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def examples(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"text": "A clean sentence of English prose.", "lang": "en"}) + "\n")
    return str(path)


@pytest.mark.parametrize("argv, expected", [
    (["train-lm", "--order", "0"], "argument --order: expected an integer >= 1, got 0"),
    (["train-lm", "--buckets", "-5"], "argument --buckets: expected an integer >= 1, got -5"),
    (["train-classifier", "--epoch", "-1"], "argument --epoch: expected an integer >= 1, got -1"),
    (["train-classifier", "--dim", "0"], "argument --dim: expected an integer >= 1, got 0"),
    (["train-classifier", "--holdout-every", "-1"], "argument --holdout-every: expected an integer >= 0, got -1"),
])
def test_training_arguments_out_of_range(argv, expected, examples, tmp_path, capsys):
    files = (["--input", examples] if argv[0] == "train-lm" else ["--positive", examples, "--negative", examples])
    with pytest.raises(SystemExit) as exit_:
        main(["quality", *argv, *files, "--out", str(tmp_path / "model")])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train-lm", "--input", "{dir}"],
                                  ["train-classifier", "--positive", "{dir}", "--negative", "{file}"]])
def test_a_directory_where_a_training_file_is_expected(argv, examples, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    argv = [a.format(dir=folder, file=examples) for a in argv]
    assert main(["quality", *argv, "--out", str(tmp_path / "model")]) == 2
    assert f"{folder}: a directory; expected an" in capsys.readouterr().err


def test_perplexity_model_needs_an_order_and_buckets():
    from filters.perplexity import train

    with pytest.raises(ValueError, match="order and buckets must be >= 1"):
        train(["some text"], order=0)


def test_classifier_seed_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["quality", "train-classifier", "--help"])
    assert "the same seed and examples give the same model" in flat(capsys.readouterr().out)


def eval_error(capsys, model: str, *data: str, extra: tuple[str, ...] = ()) -> str:
    assert main(["tokenizer", "eval", "--model", model, "--data", *data, *extra]) == 2
    return flat(capsys.readouterr().err)


@pytest.mark.parametrize("name, content, expected", [
    ("notes.txt", "plain text\n", "{path}: not Parquet or JSON lines"),
    ("docs.jsonl", '{"text": "fine", "lang": "en"}\n{"txt": "typo"}\n', "{path}:2: no field 'text'"),
    ("empty.jsonl", "", "no document in --data {path}"),
])
def test_eval_names_what_it_cannot_read(name, content, expected, tiny_model, tmp_path, capsys):  # noqa: F811
    path = tmp_path / name
    path.write_text(content)
    assert expected.format(path=path) in eval_error(capsys, tiny_model, str(path))


def test_eval_reads_zstd_json_lines(tiny_model, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "docs.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(json.dumps({"text": "Hello there.", "lang": "en"}).encode()))
    out = tmp_path / "eval.json"
    assert main(["tokenizer", "eval", "--model", tiny_model, "--data", str(path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["languages"]["en"]["docs"] == 1


@pytest.mark.parametrize("content", [b"not a model", b""])
def test_eval_names_a_file_that_is_no_model(content, examples, tmp_path, capsys):
    model = tmp_path / "afile"
    model.write_bytes(content)
    assert f"{model}: not a SentencePiece model" in eval_error(capsys, str(model), examples)


def test_eval_limit_at_least_one(examples, capsys):
    with pytest.raises(SystemExit):
        main(["tokenizer", "eval", "--model", "m", "--data", examples, "--limit", "-1"])
    assert "argument --limit: expected an integer >= 1, got -1" in capsys.readouterr().err


def test_verify_counts_one_problem(tmp_path, capsys):
    assert main(["shards", "verify", str(tmp_path)]) == 1
    assert f"{tmp_path}: 1 problem\n" in capsys.readouterr().out


def test_run_first_hint_names_the_config(tmp_path):
    from pipeline.runner import StageNotReady, input_fingerprint, stage_dir
    from pipeline.stages.mix import MixStage

    cfg = make_run_config(tmp_path, {"mix": mix_section(sources=[
        {"name": "web", "lang": "en", "stage": "dedup"}, {"name": "books", "lang": "zh", "stage": "ingest"}])})
    write_finished_stage(cfg.run.workdir, "dedup", make_docs("web", "en", 2, 100))
    stage = MixStage(cfg)
    with pytest.raises(StageNotReady, match=f"run `glmdata ingest --config {cfg.path}` first"):
        input_fingerprint(stage, stage_dir(cfg, "dedup"))


def test_an_unfinished_upstream_names_the_config_and_the_run_up_to_the_stage(tmp_path):
    from pipeline.runner import StageNotReady, input_fingerprint, stage_dir
    from pipeline.stages.pii import PiiStage

    cfg = make_run_config(tmp_path, {})
    with pytest.raises(StageNotReady, match=f"run `glmdata run --config {cfg.path} --until pii` .* or "
                                            f"`glmdata quality --config {cfg.path}` first"):
        input_fingerprint(PiiStage(cfg), stage_dir(cfg, "quality"))


def test_quality_source_naming_no_ingest_source_is_reported(tmp_path, caplog):
    from pipeline.stages.quality import QualityStage

    cfg = make_run_config(tmp_path, {
        "ingest": {"sources": [{"name": "pile", "paths": ["x.jsonl"], "subset_field": "meta.set"},
                               {"name": "books", "paths": ["y.jsonl"]}]},
        "quality": {"sources": {name: {"en": {"gopher_quality": {"max_doc_words": None}}}
                                for name in ("books", "pile/PG-19", "b*", "nosuchsource", "books/x")}}})
    with caplog.at_level(logging.WARNING):
        QualityStage(cfg)
    assert "quality.sources: books/x, nosuchsource: no such ingest source (ingest.sources: pile, books)" in caplog.text


class LocalEngine:
    """The engine's map in this process: enough for a driver step that only maps (no Spark)."""

    def map_units(self, label, fn, units):
        return [fn(unit) for unit in units]


def test_mix_weight_column_that_no_input_has(tmp_path):
    from pipeline.stages.mix import MixStage

    pq.write_table(pa.Table.from_pylist(make_docs("web", "en", 3, 100), DOC_SCHEMA), tmp_path / "docs.parquet")
    cfg = make_run_config(tmp_path, {"mix": mix_section(weight_column="q_scor", sources=[
        {"name": "web", "lang": "en", "path": str(tmp_path / "docs.parquet")}], language_shares={"en": 1.0})})
    run = StageRun(cfg, LocalEngine(), str(tmp_path / "mix"), str(tmp_path / "tmp"), None)
    with pytest.raises(ConfigError, match=r"mix.weight_column: no input of the mix has a column 'q_scor' \(columns: "):
        MixStage(cfg).setup_driver(run)


@pytest.mark.parametrize("argv, says", [
    (["inspect", "{tmp}/missing"], "glmdata inspect: error: {tmp}/missing: not a folder"),
    (["run", "--config", "{cfg}", "--from", "dedupe"], "glmdata run: error: --from dedupe: not a stage"),
    (["quality", "train-lm", "--input", "{tmp}/none.jsonl", "--out", "{tmp}/m.npz"],
     "glmdata quality train-lm: error: {tmp}/none.jsonl: no such input file"),
    (["quality"], "glmdata quality: error: --config is required to run the stage"),
])
def test_argument_errors_are_not_called_config_errors(argv, says, tmp_path, capsys):
    cfg = make_run_config(tmp_path)
    argv = [a.format(tmp=tmp_path, cfg=cfg.path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(says.format(tmp=tmp_path)) and "config error" not in err


@pytest.mark.parametrize("options", [["--config", "{cfg}"], ["--set", "run.engine=beam"], ["--force"],
                                     ["--engine", "beam"]])
def test_stage_options_before_an_action_that_takes_none_are_refused(options, examples, tmp_path, capsys):
    cfg = make_run_config(tmp_path)
    options = [o.format(cfg=cfg.path) for o in options]
    out = tmp_path / "model.npz"
    assert main(["quality", *options, "train-lm", "--input", examples, "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(
        f"glmdata quality train-lm: error: {options[0]}: options of the quality stage itself, which `glmdata quality "
        "train-lm` does not take")
    assert not out.exists()
