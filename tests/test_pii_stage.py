"""The pii stage on both engines: parity, replacement in text and in quality's pre-rewrite copy,
counts per kind in columns and stats.json, the mostly-PII drop, config errors."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_run_config, write_finished_stage
from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import run_stage
from pipeline.schema import DOC_SCHEMA, TEXT_BEFORE_REWRITE
from pipeline.stage import StageStats
from pipeline.stages.pii import MOSTLY_PII, PiiStage

DIRECTORY = "\n".join(f"联系人{i}：1390000{i:04d}" for i in range(12))
DOCS = [
    {"id": "a", "text": "请联系 zhang.san@163.com 或致电 13812345678，身份证 11010519491231002X。",
     TEXT_BEFORE_REWRITE: "请联系 zhang.san@163.com\n或致电 13812345678，身份证 11010519491231002X。"},
    {"id": "b", "text": "Released on 2023-01-01 as version 1.2.3.4 for $19.99 (ISBN 978-7-111-12345-6)."},
    {"id": "c", "text": DIRECTORY},
    {"id": "d", "text": "Write to info@givewell.org, or visit 8.8.8.8."},
    {"id": "e", "text": None},
]


def _rows(stage_dir: str) -> dict[str, dict]:
    return {r["id"]: r for p in storage.expand(stage_dir)
            if p.endswith(".parquet") and "/errors/" not in p for r in pq.read_table(p).to_pylist()}


def test_parity_and_contract(tmp_path, engines):
    schema = DOC_SCHEMA.append(pa.field(TEXT_BEFORE_REWRITE, pa.string()))
    results = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / name, {"pii": {}}, engine=name)
        write_finished_stage(cfg.run.workdir, "quality", DOCS, files=2, schema=schema)
        stats = run_stage(PiiStage(cfg), engine)
        StageStats.from_dict(stats).check_conservation(name)
        results[name] = (stats, _rows(f"{cfg.run.workdir}/pii"))
    (stats, rows), (beam_stats, beam_rows) = results["spark"], results["beam"]
    assert rows == beam_rows
    assert {k: stats[k] for k in ("in", "kept", "dropped", "extra")} == \
           {k: beam_stats[k] for k in ("in", "kept", "dropped", "extra")}

    assert rows["a"]["text"] == "请联系 <EMAIL> 或致电 <PHONE>，身份证 <CN_ID>。"
    assert rows["a"][TEXT_BEFORE_REWRITE] == "请联系 <EMAIL>\n或致电 <PHONE>，身份证 <CN_ID>。"
    assert (rows["a"]["q_pii_email"], rows["a"]["q_pii_phone"], rows["a"]["q_pii_cn_id"]) == (1, 1, 1)
    assert rows["b"]["text"] == DOCS[1]["text"] and sum(v for k, v in rows["b"].items() if k.startswith("q_pii_")) == 0
    assert rows["c"]["reject_reason"] == MOSTLY_PII and rows["c"]["text"] == DIRECTORY
    assert rows["d"]["text"] == "Write to <EMAIL>, or visit <IP>."
    assert rows["e"]["text"] is None and rows["e"].get("reject_reason") is None
    assert stats["dropped"] == {MOSTLY_PII: {"docs": 1, "bytes": len(DIRECTORY.encode())}}
    assert stats["extra"]["pii_email"] == 2 and stats["extra"]["pii_phone"] == 1
    assert stats["extra"]["pii_documents_changed"] == 2


def test_dummy_mode_and_kind_subset(tmp_path):
    cfg = make_run_config(tmp_path, {"pii": {"mode": "dummy", "kinds": ["email"]}}, engine="beam")
    result = PiiStage(cfg).process_batch(pa.RecordBatch.from_pylist(DOCS[:1], DOC_SCHEMA.append(
        pa.field(TEXT_BEFORE_REWRITE, pa.string()))))
    assert result.rows.column("text")[0].as_py() == "请联系 email@example.com 或致电 13812345678，身份证 11010519491231002X。"


@pytest.mark.parametrize("section, message", [
    ({"kinds": ["ssn"]}, "unknown PII kind 'ssn'"),
    ({"mode": "hash"}, "mode: expected 'tag' or 'dummy'"),
    ({"max_pii_char_frac": 0}, "max_pii_char_frac"),
    ({"replacements": {"phones": "<TEL>"}}, "replacements: unknown PII kind 'phones'"),
])
def test_config_errors_name_the_key(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        make_run_config(tmp_path, {"pii": section})
