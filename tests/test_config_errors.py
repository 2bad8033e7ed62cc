"""A bad config or --set item gets one readable line naming the file (or the --set item), the key and
what was expected, never a traceback. Only config loading and argument parsing: no engine starts."""
from __future__ import annotations

import pytest

from pipeline.cli import build_parser, config_from_args, main
from pipeline.config import ConfigError
from pipeline.stages import load_config


@pytest.fixture
def config(tmp_path):
    """config.yaml in tmp_path with a workdir and one ingest source."""
    path = tmp_path / "config.yaml"
    path.write_text(f"run: {{workdir: {tmp_path / 'w'}}}\n"
                    "ingest: {sources: [{name: web, format: jsonl, paths: [web.jsonl]}]}\n")
    return path


def config_error(capsys, argv: list[str]) -> str:
    """What `glmdata ARGV` prints for its config error (it must exit 2, not raise)."""
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


@pytest.mark.parametrize("yaml_text,message", [
    ("dedup: off", "dedup: expected mapping (DedupSection), got False"),  # YAML 1.1: off is False
    ("dedup: 'off'", "dedup: expected mapping (DedupSection), got 'off'"),
    ("dedup: 5", "dedup: expected mapping (DedupSection), got 5"),
    ("pii: [{mode: tag}]", "pii: expected mapping (PiiSection), got [{'mode': 'tag'}]"),
    ("ingest: [a, b]", "ingest: expected mapping (IngestSection), got ['a', 'b']"),
    ("1: x\nfoo: y", "1: unknown section; expected one of: "),
    ("shards: {1: x, foo: y}", "shards.1: unknown key; expected one of: "),
])
def test_sections_that_are_not_mappings_or_keys_that_are_not_names(tmp_path, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(f"run: {{workdir: {tmp_path / 'w'}}}\n{yaml_text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_run_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("run: x\n")
    with pytest.raises(ConfigError, match=r"config.yaml: run: expected mapping \(RunSection\), got 'x'$"):
        load_config(path)


@pytest.mark.parametrize("item,message", [
    ("run=5", "--set run: expected mapping (RunSection), got 5"),
    ("shards=5", "--set shards: expected mapping (ShardsSection), got 5"),
    ("run.workdir.x=1", "--set run.workdir.x: run.workdir is not a mapping but "),
    ("ingest.sources.0.name=x", "--set ingest.sources.0.name: ingest.sources is a list, which --set cannot reach into; "
                                "set the whole list (--set 'ingest.sources=[...]') or edit "),
    ("run.seed=[1", "--set 'run.seed=[1': '[1' is not valid YAML (expected ',' or ']', but got '<stream end>')"),
    # errors name the --set item, not the YAML file that never had the value
    ("shards.seq_len=fifty", "--set shards.seq_len: expected int, got 'fifty'"),
    ("shards.seq_lenn=256", "--set shards.seq_lenn: unknown key; expected one of: gmask_min_ratio, "),
    ("run.seed.x=1", "--set run.seed.x: run.seed: expected int, got {'x': 1}"),
    ("qualty.x=1", "--set qualty.x: qualty: unknown section"),
])
def test_set_items_that_do_not_fit_name_the_item(capsys, config, item, message):
    assert config_error(capsys, ["mix", "--config", str(config), "--set", item]).startswith(f"config error: {message}")


def test_a_check_of_a_whole_section_names_the_set_items_in_it(capsys, config):
    argv = ["mix", "--config", str(config), "--set", "shards.mask_sample_len=100"]
    relation = "seq_len (2048) must be a multiple of mask_sample_len (100)"
    assert config_error(capsys, argv).startswith(f"config error: --set shards.mask_sample_len: shards: {relation}")
    config.write_text(config.read_text() + "shards: {seq_len: 2048}\n")  # now the section is the file's
    assert config_error(capsys, argv).startswith(
        f"config error: {config}: shards (with --set shards.mask_sample_len): {relation}")


def test_relative_set_paths_resolve_against_the_current_folder(tmp_path, monkeypatch, capsys):
    """A shell user's relative path means the folder they are in; paths in the YAML mean the YAML's folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "lid.bin").write_bytes(b"")
    path = tmp_path / "sub" / "config.yaml"
    path.write_text("run: {workdir: w}\n")
    monkeypatch.chdir(tmp_path)

    def load(*sets: str):
        return config_from_args(build_parser().parse_args(["mix", "--config", str(path), *sets]))

    assert load().run.workdir == str(tmp_path / "sub" / "w")
    cfg = load("--set", "run.workdir=w", "--set", "langid.model=models/lid.bin")
    assert (cfg.run.workdir, cfg.section("langid").model) == (str(tmp_path / "w"), str(tmp_path / "models" / "lid.bin"))
    assert config_error(capsys, ["mix", "--config", str(path), "--set", "langid.model=sub/models/lid.bin"]) == (
        "config error: --set langid.model: expected an existing input path, but 'sub/models/lid.bin' "
        f"(resolved to {tmp_path / 'sub/models/lid.bin'}) matches no file")


def test_config_files_that_cannot_be_read(capsys, tmp_path):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert config_error(capsys, ["mix", "--config", str(folder)]) == (
        f"config error: {folder}: is a directory, not a config file")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"# caf\xe9\nrun: {workdir: w}\n")
    assert config_error(capsys, ["mix", "--config", str(latin1)]) == (
        f"config error: {latin1}: not UTF-8 (byte 0xe9 at offset 5, line 1)")


@pytest.mark.parametrize("workdir,message", [("config.yaml", "{tmp}/config.yaml exists and is not a folder"),
                                             ("''", "expected a folder, got ''")])
def test_workdirs_that_cannot_be_one(tmp_path, workdir, message):
    path = tmp_path / "config.yaml"
    path.write_text(f"run: {{workdir: {workdir}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: run.workdir: " + message.format(tmp=tmp_path)


def test_spark_conf_numbers_and_booleans_become_spark_strings(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("run: {workdir: w, spark: {conf: {spark.executor.cores: 4, spark.eventLog.enabled: true, "
                    "spark.memory.fraction: 0.5, spark.app.name: x}}}\n")
    assert load_config(path).run.spark.conf == {"spark.executor.cores": "4", "spark.eventLog.enabled": "true",
                                                "spark.memory.fraction": "0.5", "spark.app.name": "x"}


def test_verbose_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["mix", "--config", "c.yaml", "-v"]).verbose
    assert parser.parse_args(["shards", "verify", "DIR", "--verbose"]).verbose
    assert parser.parse_args(["-v", "mix", "--config", "c.yaml"]).verbose  # the command's own default keeps it
    assert not parser.parse_args(["mix", "--config", "c.yaml"]).verbose


def test_merge_keys_build_on_an_anchor_and_the_keys_beside_them_override_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"run: {{workdir: {tmp_path / 'w'}}}\n"
                    "ingest:\n  sources:\n"
                    "    - &web {name: web, format: jsonl, paths: [web.jsonl]}\n"
                    "    - <<: *web\n      name: web2\n")
    sources = load_config(path).section("ingest").sources
    assert [(s.name, s.format) for s in sources] == [("web", "jsonl"), ("web2", "jsonl")]


def test_a_key_that_is_a_list_is_named_not_a_traceback(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"run:\n  workdir: {tmp_path / 'w'}\n  ? [a, b]\n  : 1\n")
    with pytest.raises(ConfigError, match=r"(?s)not valid YAML: .*found unhashable key"):
        load_config(path)
