"""encode: token ids per document on both engines, exact round trip, the report's measured bytes per token."""
from __future__ import annotations

import gc
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.runner import run_stage
import pipeline.stages.encode as encode_module
from pipeline.stages.encode import (EncodeStage, collector_paused, document_texts, encode_column, encode_with_copies,
                                    worker_tokenizer)
from pipeline.stages.mix import DEFAULT_STAGE, MixStage
from tokenizer.special_tokens import EOS
from tokenizer.spm import load

from conftest import make_run_config, write_finished_stage
from test_mix import out_rows
from test_tokenizer import TRICKY, shared_documents, tiny_model  # noqa: F401  (fixture)


def finished_tokenizer(workdir: str, model: str) -> None:
    """A tokenizer stage output made of `model` (its training is tested in test_tokenizer)."""
    storage.makedirs(storage.join(workdir, "tokenizer"))
    shutil.copy(model, storage.join(workdir, "tokenizer", "tokenizer.model"))
    storage.write_text(storage.join(workdir, "tokenizer", "_SUCCESS"),
                       json.dumps({"config_hash": "test", "input_fingerprint": "test"}))


def test_encode_on_both_engines(tmp_path, engines, shared_data, tiny_model):  # noqa: F811
    docs = shared_documents(shared_data)[::10]
    rows = [{"id": d["id"], "text": d["text"], "lang": d["lang"], "source": "web", "source_offset": i}
            for i, d in enumerate(docs)]
    rows.append({"id": "empty", "text": "", "lang": "en", "source": "web", "source_offset": -1})
    cfg = make_run_config(tmp_path, {"mix": {"target_tokens": 10_000_000, "max_epochs": 1.5, "sources": [
        {"name": "web_en", "lang": "en", "match_source": ["web"]},
        {"name": "web_zh", "lang": "zh", "match_source": ["web"]}]}})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, rows, files=3)
    run_stage(MixStage(cfg), engines["spark"])
    finished_tokenizer(cfg.run.workdir, tiny_model)
    encoded = {}
    for name, engine in engines.items():
        summary = run_stage(EncodeStage(cfg), engine, force=True)
        assert summary["kept"]["docs"] == summary["in"]["docs"] > len(rows) and not summary["errors"]
        encoded[name] = out_rows(cfg, "encode")
    assert [(r["id"], r["tokens"]) for r in encoded["spark"]] == [(r["id"], r["tokens"]) for r in encoded["beam"]]

    tok = load(tiny_model)
    mixed = out_rows(cfg, "mix")
    texts = {r["id"]: r["text"] for r in mixed}
    # the demo mix upsamples a source, so the copies path of encode_with_copies runs on both engines
    assert len(texts) == len(encoded["spark"]) and any(r["mix_repeat"] for r in mixed)
    for r in encoded["spark"]:
        assert r["tokens"] == tok.encode(texts[r["id"]]), r["id"]
        assert tok.decode(r["tokens"]) == texts[r["id"]], r["id"]
        assert r["n_tokens"] == len(r["tokens"]) and EOS not in r["tokens"]
    part = storage.expand(f"{cfg.run.workdir}/encode/data")[0]
    schema = pq.read_schema(part)
    assert schema.field("tokens").type == pa.list_(pa.int32()) and schema.field("n_tokens").type == pa.int32()
    assert {"id", "lang", "source", "mix_source", "mix_repeat"} <= set(schema.names) and "text" not in schema.names

    report = summary["report"]
    for lang, lo, hi in (("en", 2.0, 6.0), ("zh", 1.0, 4.0)):
        figures = report["languages"][lang]
        assert lo < figures["bytes_per_token"] < hi, figures
    assert sum(v["tokens"] for v in report["sources"].values()) == sum(r["n_tokens"] for r in encoded["spark"])
    assert worker_tokenizer(EncodeStage(cfg).model_uri()) is worker_tokenizer(EncodeStage(cfg).model_uri())


def test_encode_with_a_given_model(tmp_path, spark_session_engine, tiny_model, capsys):  # noqa: F811
    from test_mix import make_docs

    cfg = make_run_config(tmp_path, {
        "mix": {"target_tokens": 1000, "sources": [{"name": "a", "lang": "en"}, {"name": "b", "lang": "zh"}],
                "count_tokens_with": tiny_model},
        "encode": {"model": tiny_model, "keep_text": True}})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE,
                         make_docs("a", "en", 20, 100) + make_docs("b", "zh", 20, 90), files=1)
    run_stage(MixStage(cfg), spark_session_engine)
    stage = EncodeStage(cfg)
    assert stage.depends_on == ()  # no tokenizer stage needed
    summary = run_stage(stage, spark_session_engine)
    assert summary["kept"]["docs"] == summary["in"]["docs"] > 0
    rows = out_rows(cfg, "encode")
    assert all(r["text"] == f"{r['source']} {r['id'].split(':')[1].split('#')[0]} " + ("word " * 20 if r["lang"] == "en" else "中文" * 15)
               for r in rows), "keep_text writes the text beside the tokens"
    said = " ".join(capsys.readouterr().err.split())
    assert f"the mix was planned on exact counts ({tiny_model})" in said and "set mix.count_tokens_with" not in said


def test_encode_writes_the_tokens_beside_the_identity_columns_only(tmp_path, spark_session_engine,
                                                                     tiny_model):  # noqa: F811
    """The signals of the stages before stay in mix/data under the same id; `keep_columns` carries some."""
    from test_mix import make_docs

    from pipeline.config import ConfigError
    from pipeline.stages.encode import IDENTITY_COLUMNS

    signals = {"q_score": lambda i: i / 100, "q_n_words": lambda i: 7 * i}
    docs = make_docs("a", "en", 30, 100, **signals) + make_docs("b", "zh", 30, 90, **signals)
    columns = {}
    for keep in ([], ["q_score", "url"]):
        cfg = make_run_config(tmp_path / f"keep{len(keep)}", {
            "mix": {"target_tokens": 1000, "sources": [{"name": "a", "lang": "en"}, {"name": "b", "lang": "zh"}]},
            "encode": {"model": tiny_model, "keep_columns": keep}})
        write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=2)
        run_stage(MixStage(cfg), spark_session_engine)
        summary = run_stage(EncodeStage(cfg), spark_session_engine)
        assert summary["kept"]["docs"] == summary["in"]["docs"] > 0 and not summary["errors"]
        columns[len(keep)] = pq.read_schema(storage.expand(f"{cfg.run.workdir}/encode/data")[0]).names
        chunks = pq.read_metadata(storage.expand(f"{cfg.run.workdir}/encode/data")[0]).row_group(0)
        compression = {chunks.column(i).path_in_schema: chunks.column(i).compression for i in range(chunks.num_columns)}
        assert compression.pop("tokens.list.element") == "UNCOMPRESSED" and set(compression.values()) == {"ZSTD"}
        mixed = {r["id"]: r for r in out_rows(cfg, "mix")}
        for r in out_rows(cfg, "encode"):
            assert all(r[c] == mixed[r["id"]][c] for c in set(columns[len(keep)]) - {"tokens", "n_tokens"}), r["id"]
    with pytest.raises(ConfigError, match=r"encode.keep_columns: \['q_scor'\] not among the mix's columns \(id, text"):
        cfg.sections["encode"].keep_columns = ["q_score", "q_scor"]
        run_stage(EncodeStage(cfg), spark_session_engine, force=True)
    assert columns[0] == [*IDENTITY_COLUMNS, "tokens", "n_tokens"]
    assert columns[2] == [*IDENTITY_COLUMNS, "q_score", "url", "tokens", "n_tokens"]

    (tmp_path / "bad.yaml").write_text("run: {workdir: /tmp/x}\nencode: {keep_columns: [q_score, text]}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: encode: keep_columns: \['text'\] are the stage's own"):
        from pipeline.stages import load_config

        load_config(tmp_path / "bad.yaml")


def test_token_ids_skip_zstd_only_where_their_dictionary_always_fits(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    """Dictionary-encoded ids are bit-packed already; ids that fall back to plain encoding get zstd."""
    from pipeline.worker_models import worker_tokenizer

    stage = EncodeStage(make_run_config(tmp_path, {"encode": {"model": tiny_model}}))
    assert stage.uncompressed_columns() == ("tokens",)
    monkeypatch.setattr(storage, "DICTIONARY_PAGE_LIMIT", 4 * worker_tokenizer(tiny_model).vocab_size)
    assert stage.uncompressed_columns() == ()


def test_token_column_holds_each_documents_ids(shared_data, tiny_model):  # noqa: F811
    """The list<int32> column built from one flat id array and offsets holds, row by row, exactly
    `Tokenizer.encode`'s ids: empty and whitespace-only documents, emoji and rare Han (byte pieces),
    a literal "▁" between plain texts, real documents."""
    tok = load(tiny_model)
    texts = TRICKY + ["", " ", "\n\t \u3000", "😀" * 40, "\u2581"]
    texts += [d["text"] for d in shared_documents(shared_data)[::40]]
    tokens, n_tokens = encode_column(tok, texts)
    assert tokens.type == pa.list_(pa.int32()) and n_tokens.type == pa.int32()
    expected = [tok.encode(t) for t in texts]
    assert tokens.to_pylist() == expected
    assert n_tokens.to_pylist() == [len(ids) for ids in expected]
    assert any(tok.is_byte(i) for i in expected[2]), "the emoji and rare Han of TRICKY[2] take byte pieces"
    assert [tok.decode(ids) for ids in tokens.to_pylist()] == texts
    none, no_lengths = encode_column(tok, [])
    assert none.type == pa.list_(pa.int32()) and len(none) == len(no_lengths) == 0


def test_the_stages_texts_give_the_same_ids(tiny_model):  # noqa: F811
    """The stage hands SentencePiece UTF-8 bytes and finds the texts with a literal "▁" in one search over
    the column: the same ids as `Tokenizer.encode` on each str, for a sliced batch (an Arrow offset), null
    texts, "▁" at a text's start and end, in neighbouring texts and beside other characters of the same lead byte."""
    tok = load(tiny_model)
    texts = ["skip \u2581", "plain text", "\u2581start", "", "end\u2581", "\u2581", "two\u2581\u2581 marks",
             "\u2580\u2582 ─", "中文\u2581中文", "", "😀\u2581", "last plain"]
    batch = pa.RecordBatch.from_pydict({"text": pa.array(texts, pa.string())}).slice(1)
    as_bytes, marked = document_texts(batch)
    expected = texts[1:]
    assert as_bytes == [t.encode() for t in expected]
    assert marked == {i for i, t in enumerate(expected) if "\u2581" in t} == {1, 3, 4, 5, 7, 9}
    tokens, _ = encode_column(tok, as_bytes, marked)
    assert tokens.to_pylist() == [tok.encode(t) for t in expected]
    assert encode_column(tok, as_bytes)[0] == tokens, "bytes without `marked`: searched text by text"
    with_nulls = pa.RecordBatch.from_pydict({"text": pa.array([None, "", None, "a\u2581"], pa.string())})
    assert document_texts(with_nulls) == ([b"", b"", b"", "a\u2581".encode()], {3})


def test_a_documents_copies_are_encoded_once_in_its_batch_or_a_later_one(tiny_model, monkeypatch):  # noqa: F811
    """The mix writes copies copy by copy (all originals of a mix batch, then their first copies, ...),
    so a copy comes thousands of rows after its original, in a later batch of this stage."""
    tok = load(tiny_model)
    encoded_texts = []
    real_encode_flat = tok.encode_flat
    monkeypatch.setattr(tok, "encode_flat", lambda texts, marked=None: encoded_texts.extend(texts)
                        or real_encode_flat(texts, marked))
    cache = encode_module.CopyCache()
    # (id, mix_source, mix_repeat, text); "kept" is not upsampled, "m#1" holds another text than "m"
    batches = [[("a", "up", 0, "一段中文。"), ("b", "up", 0, "a text"), ("c", "up", 0, "a \u2581 mark"),
                ("d", "kept", 0, "solo"), ("m", "up", 0, "x"), ("e", "up", 0, "once"), ("e#1", "up", 1, "once")],
               [("a#1", "up", 1, "一段中文。"), ("b#1", "up", 1, "a text"), ("c#1", "up", 1, "a \u2581 mark"),
                ("d#1", "kept", 1, "solo"), ("m#1", "up", 1, "y"), ("b#2", "up", 2, "a text"), ("z", None, None, "")]]
    for rows in batches:
        ids, sources, repeats, texts = map(list, zip(*rows))
        batch = pa.record_batch({"id": ids, "text": texts, "mix_source": pa.array(sources, pa.string()),
                                 "mix_repeat": pa.array(repeats, pa.int32())})
        as_bytes, marked = document_texts(batch)
        tokens, n_tokens = encode_with_copies(tok, batch, as_bytes, marked, frozenset({"up"}), cache)
        assert tokens.type == pa.list_(pa.int32()) and n_tokens.type == pa.int32()
        assert tokens.to_pylist() == [tok.encode(t) for t in texts]
        assert n_tokens.to_pylist() == [len(tok.encode(t)) for t in texts]
    assert sorted(t.decode() for t in encoded_texts) == sorted(
        ["一段中文。", "a text", "a \u2581 mark", "solo", "x", "once", "solo", "y", ""])
    encoded_texts.clear()
    encode_with_copies(tok, batch, as_bytes, marked, frozenset(), encode_module.CopyCache())
    assert len(encoded_texts) == len(texts), "no upsampled source: every row encoded"


def test_the_copy_cache_holds_its_byte_budget_and_compares_texts():
    cache = encode_module.CopyCache(max_bytes=10)
    for doc_id in "abc":
        cache.put(doc_id, b"12345", np.array([ord(doc_id)], np.int32))
    assert cache.get("a", b"12345") is None and cache.get("b", b"12345").tolist() == [98]
    assert cache.get("c", b"other") is None, "a copy whose text differs takes nothing"
    cache.put("big", b"x" * 11, np.zeros(1, np.int32))
    assert cache.get("big", b"x" * 11) is None and cache.get("c", b"12345") is not None


def test_collector_paused_gives_the_collector_back():
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        assert not gc.isenabled()
        raise ValueError("a batch that fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_local_spark_workers_reuse_freed_pages(spark_session_engine):
    """Local mode's Python workers run with Arrow's allocator told to keep freed pages mapped (MADV_FREE):
    the next batch reuses them without page faults (pipeline/engines/spark.py, bench/encode.py)."""
    import os

    seen = spark_session_engine.map_units("worker env", lambda unit: os.environ.get("MIMALLOC_PURGE_DECOMMITS"), [0])
    assert seen == ["0"]


def test_a_model_that_matches_the_markers_in_text_is_refused(tmp_path, shared_data):
    """A foreign model (encode.model, mix.count_tokens_with) whose [MASK] ... <eop> are user-defined pieces
    has the right strings at ids 0..7, but a document typing "[MASK]" would get the special id."""
    import io

    import sentencepiece as spm

    from tokenizer.spm import SpecialTokenError, load_proto
    from tokenizer.train import CONTROL_SYMBOLS, TrainSettings, sentencepiece_arguments, write_training_lines

    sample = tmp_path / "sample.txt"
    with sample.open("w", encoding="utf-8") as f:
        for d in shared_documents(shared_data)[::40]:
            write_training_lines(d["text"], f, 8192)
    args = sentencepiece_arguments(TrainSettings(vocab_size=1000, character_coverage=0.98, num_threads=1))
    args.update(user_defined_symbols=CONTROL_SYMBOLS + args["user_defined_symbols"], control_symbols=[])
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(input=str(sample), model_writer=model, **args)
    tok = load_proto(model.getvalue())
    assert 3 in tok.encode("type [MASK] here")  # what the check keeps out of the shards
    with pytest.raises(SpecialTokenError, match=r"\[MASK\], \[gMASK\], \[sMASK\], <sop>, <eop> must be control"):
        tok.check_special_tokens()
