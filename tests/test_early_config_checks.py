"""Settings a stage used to check only when a run reached it are refused when the config loads (a
section's own values), or when `glmdata run` starts (values across sections), before any stage runs."""
from __future__ import annotations

import re

import pytest

from pipeline.cli import main as glmdata
from pipeline.config import ConfigError

from conftest import make_run_config

MIX_EN_ONLY = {"sources": [{"name": "web", "lang": "en"}], "target_tokens": 1000, "language_shares": {"en": 1.0}}


@pytest.mark.parametrize("sections,message", [
    ({"dedup": {"threshold": 1.5}}, "dedup: threshold: expected a number between 0 and 1, got 1.5"),
    ({"dedup": {"survivor_order": ["q_score", "freshness"]}}, "dedup: survivor_order: expected keys among"),
    ({"dedup": {"num_perm": 0}}, "dedup.num_perm: expected an integer >= 1, got 0"),
    ({"dedup": {"zh_ngram": 0}}, "dedup.zh_ngram: expected an integer >= 1, got 0"),
    ({"dedup": {"bands": 4}}, "dedup: bands and rows: expected both 0 (derived from the threshold) or both >= 1"),
    ({"dedup": {"bands": 20, "rows": 8}}, "dedup: bands x rows = 20 x 8 needs more than num_perm = 128"),
    ({"dedup": {"q_score_step": 0}}, "dedup.q_score_step: expected a finite number > 0 and <= 1, got 0.0"),
    ({"dedup": {"index": "/etc/glm_idx"}}, "dedup: index: expected a folder of your own, got '/etc/glm_idx'"),
    ({"mix": {**MIX_EN_ONLY, "bytes_per_token": {"en": 0, "zh": 3.6}}},
     "mix: bytes_per_token must be > 0, got {'en': 0.0, 'zh': 3.6}"),
    ({"tokenizer": {"sample_bytes": 0}}, "tokenizer.sample_bytes: expected an integer >= 1, got 0"),
])
def test_refused_when_the_config_loads(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'config.yaml'}: {message}")):
        make_run_config(tmp_path, sections)


def test_run_stops_before_its_first_stage_on_settings_across_sections(tmp_path, capsys):
    tokenizer = {"language_shares": {"en": 0.5, "zh": 0.5}}
    cfg = make_run_config(tmp_path, {"mix": MIX_EN_ONLY, "tokenizer": tokenizer})  # each section is valid alone
    assert glmdata(["run", "--config", cfg.path, "--from", "mix"]) == 2
    assert (f"{cfg.path}: tokenizer.language_shares: asks for {{'en': 0.5, 'zh': 0.5}}, but the mix has no zh "
            "documents (mix.language_shares gives them no tokens)") in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "no stage ran: not even the workdir's lease was taken"


def test_run_stops_before_its_first_stage_on_a_benchmark_field_its_file_lacks(tmp_path, capsys):
    (tmp_path / "bench.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    benchmark = {"name": "qa", "path": str(tmp_path / "bench.jsonl"), "fields": ["question", "answers"]}
    cfg = make_run_config(tmp_path, {"decontaminate": {"benchmarks": [benchmark]}, "mix": MIX_EN_ONLY,
                                     "tokenizer": {"language_shares": {"en": 1.0}}})
    assert glmdata(["run", "--config", cfg.path, "--from", "decontaminate"]) == 2
    assert "bench.jsonl:1: decontaminate.benchmarks[qa]: expected a JSON object with fields" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
