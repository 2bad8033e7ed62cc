"""`glmdata export megatron`: megatron-core's own IndexedDataset reads back exactly the tokens written."""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

from conftest import make_run_config
from pipeline.cli import main as glmdata
from pipeline.export_megatron import Concatenate, WritePart, export_megatron
from pipeline.stages.shards import encode_stats
from report_fixtures import count_stats_reads
from test_shards_data import (VOCAB_SIZE, bad_documents, make_encoded_workdir, random_documents, real_documents,
                              tokenizer_model)
from test_tokenizer import tiny_model  # noqa: F401  (fixture)
from tokenizer.special_tokens import EOS, NUM_SPECIAL

with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": not needed to read
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder


def valid(docs: list[dict], vocab_size: int = VOCAB_SIZE) -> list[list[int]]:
    return [d["tokens"] for d in docs
            if d["tokens"] and min(d["tokens"]) >= NUM_SPECIAL and max(d["tokens"]) < vocab_size]


@pytest.fixture(scope="module")
def documents(shared_data):
    return real_documents(shared_data)[:60] + bad_documents() + random_documents(50, seed=2)


def check_megatron_reads(prefix: str, expected: list[list[int]], dtype) -> None:
    ds = IndexedDataset(prefix)
    assert len(ds) == len(expected)
    assert ds.index.dtype == dtype
    for i, tokens in enumerate(expected):
        assert ds[i].tolist() == tokens, i
    assert ds.document_indices.tolist() == list(range(len(expected) + 1))
    assert ds.sequence_lengths.tolist() == [len(t) for t in expected]


def test_megatron_core_reads_exactly_the_tokens_on_both_engines(engines, tmp_path, shared_data, documents):
    make_encoded_workdir(tmp_path / "w" / "out", tokenizer_model(shared_data), documents, parts=3)
    expected = [t + [EOS] for t in valid(documents)]
    files = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / "w", engine=name)
        prefix = str(tmp_path / name / "corpus")
        summary = export_megatron(cfg, engine, prefix, encode_stats(cfg.run.workdir))
        assert summary["documents"] == len(expected) and summary["dtype"] == "uint16"
        assert summary["dropped"] == {"empty": 1, "special_token_id": 1, "token_id_out_of_vocab": 1}
        check_megatron_reads(prefix, expected, np.uint16)
        files[name] = [open(prefix + ext, "rb").read() for ext in (".bin", ".idx")]
        assert not (tmp_path / name / "corpus.parts-tmp").exists()
    assert files["spark"] == files["beam"]
    builder = IndexedDatasetBuilder(str(tmp_path / "megatron.bin"), dtype=np.uint16)  # Megatron's own writer
    for tokens in expected:
        builder.add_document(tokens, [len(tokens)])
    builder.finalize(str(tmp_path / "megatron.idx"))
    assert files["spark"] == [(tmp_path / f"megatron{ext}").read_bytes() for ext in (".bin", ".idx")]
    idx = files["spark"][1]
    assert idx[:9] == b"MMIDIDX\x00\x00"  # then version, dtype code 8 (uint16), sequences, documents + 1
    assert struct.unpack("<QBQQ", idx[9:34]) == (1, 8, len(expected), len(expected) + 1)


def test_large_vocabulary_is_int32_and_eos_optional(tmp_path):
    """Vocabularies of 65,500 ids or more are written as int32 (Megatron's optimal_dtype)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from test_shards_data import ENCODED_SCHEMA

    docs = random_documents(30, seed=5, vocab_size=70_000)
    parts = []
    for p, chunk in enumerate((docs[:12], docs[12:])):
        path = tmp_path / f"part-{p:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, ENCODED_SCHEMA), path, row_group_size=5)
        parts.append(str(path))
    write = WritePart(str(tmp_path / "parts"), 70_000, append_eos=False)
    for indexed in enumerate(parts):
        write(indexed)
    Concatenate(str(tmp_path / "parts"), str(tmp_path / "big"), 70_000)(list(range(len(parts))))
    check_megatron_reads(str(tmp_path / "big"), valid(docs, 70_000), np.int32)


def test_cli_on_a_workdir(tmp_path, shared_data, documents, monkeypatch):
    """Without --engine, the export runs on the engine that encoded the workdir (here Beam): a tiny
    Beam run is not exported by starting Spark."""
    import json

    import pipeline.engines

    workdir = make_encoded_workdir(tmp_path / "w", tokenizer_model(shared_data), documents, parts=2)
    (workdir / "encode" / "stats.json").write_text(json.dumps({"stage": "encode", "engine": "beam"}))
    started = []
    real = pipeline.engines.make_engine
    monkeypatch.setattr(pipeline.engines, "make_engine", lambda cfg, name=None: started.append(name) or real(cfg, name))
    prefix = str(tmp_path / "out" / "corpus")
    reads = count_stats_reads(monkeypatch)
    assert glmdata(["export", "megatron", "--workdir", str(workdir), "--out", prefix]) == 0
    assert started == ["beam"]
    assert reads == {str(workdir / "encode" / "stats.json"): 1}  # the engine and the tokenizer from one read
    check_megatron_reads(prefix, [t + [EOS] for t in valid(documents)], np.uint16)
    assert glmdata(["export", "megatron", "--workdir", str(tmp_path / "nothing"), "--out", prefix,
                    "--engine", "beam"]) == 2


def test_a_workdir_export_reads_with_the_model_encode_recorded(tmp_path, shared_data, documents, tiny_model,  # noqa: F811
                                                              capsys):
    """encode ran with encode.model M; <workdir>/tokenizer holds another model (or none): the export by
    --workdir uses M, as encode's stats.json recorded it (URI and sha256), and says so when M is gone."""
    import hashlib
    import json
    import shutil

    model = tmp_path / "models" / "m.model"
    model.parent.mkdir()
    shutil.copy(tokenizer_model(shared_data), model)
    workdir = make_encoded_workdir(tmp_path / "w", tiny_model, documents, parts=2)  # the other model in tokenizer/
    (workdir / "encode" / "stats.json").write_text(json.dumps({"stage": "encode", "engine": "beam", "report": {
        "model": str(model), "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}}))
    prefix = str(tmp_path / "out" / "corpus")
    assert glmdata(["export", "megatron", "--workdir", str(workdir), "--out", prefix]) == 0
    check_megatron_reads(prefix, [t + [EOS] for t in valid(documents)], np.uint16)
    model.unlink()
    assert glmdata(["export", "megatron", "--workdir", str(workdir), "--out", prefix]) == 3
    assert f"no tokenizer model at {model} or {workdir}/tokenizer/tokenizer.model with the sha256 encode recorded" in \
        " ".join(capsys.readouterr().err.split())


def test_nothing_to_export_is_an_error(tmp_path, shared_data, capsys):
    """Megatron cannot open an empty .bin: an export in which every document was dropped fails."""
    workdir = make_encoded_workdir(tmp_path / "w", tokenizer_model(shared_data), bad_documents(), parts=1)
    (workdir / "encode" / "stats.json").write_text('{"stage": "encode", "engine": "beam"}')
    prefix = tmp_path / "out" / "corpus"
    assert glmdata(["export", "megatron", "--workdir", str(workdir), "--out", str(prefix)]) == 1
    assert "no document to export; dropped:" in capsys.readouterr().err
    assert not prefix.with_suffix(".bin").exists()
