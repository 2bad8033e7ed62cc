"""The shards stage on Spark and Beam: byte-identical shards, the whole stream accounted for,
`glmdata shards verify`, the memory-mapped reader and the report aggregates."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import make_run_config
from pipeline.cli import main as glmdata
from pipeline.runner import run_stage
from pipeline.stages.shards import ShardsStage, verify_shards
from test_shards_data import (bad_documents, expected_stream, make_encoded_workdir, random_documents,
                              real_documents, reconstruct_samples, tokenizer_model)
from trainer.shard_format import SEQ_COLUMNS, ShardDataset, file_sha256, read_manifest, write_shard

SECTION = {"seq_len": 256, "mask_sample_len": 64, "sequences_per_shard": 64}


@pytest.fixture(scope="module")
def documents(shared_data):
    docs = real_documents(shared_data) + random_documents(150, seed=4) + bad_documents()
    order = np.random.default_rng(0).permutation(len(docs))  # languages and bad rows interleaved
    return [docs[i] for i in order]


def run_shards(tmp_path, engine, docs, model, name: str, **section):
    cfg = make_run_config(tmp_path / name, {"shards": {**SECTION, **section}})
    make_encoded_workdir(tmp_path / name / "out", model, docs)
    return cfg, run_stage(ShardsStage(cfg), engine)


@pytest.fixture(scope="module")
def spark_and_beam_runs(tmp_path_factory, spark_session_engine, shared_data, documents):
    from pipeline.engines.beam import BeamEngine

    tmp = tmp_path_factory.mktemp("shards")
    model = tokenizer_model(shared_data)
    spark_cfg, spark_summary = run_shards(tmp, spark_session_engine, documents, model, "spark")
    beam_engine = BeamEngine(make_run_config(tmp / "beamcfg", engine="beam"))
    beam_cfg, beam_summary = run_shards(tmp, beam_engine, documents, model, "beam")
    return {"spark": (spark_cfg, spark_summary), "beam": (beam_cfg, beam_summary)}


def shards_dir(cfg) -> str:
    return f"{cfg.run.workdir}/shards"


def test_spark_and_beam_write_byte_identical_shards(spark_and_beam_runs):
    (spark_cfg, spark), (beam_cfg, beam) = spark_and_beam_runs["spark"], spark_and_beam_runs["beam"]
    a, b = read_manifest(shards_dir(spark_cfg)), read_manifest(shards_dir(beam_cfg))
    assert len(a["shards"]) > 3  # several shards, so several tasks ran in parallel
    assert a["shards"] == b["shards"]  # sha256 included
    for key in ("kept", "dropped", "in", "extra", "report"):
        assert spark[key] == beam[key]


def test_every_valid_token_is_in_the_shards_exactly_once(spark_and_beam_runs, documents):
    cfg, summary = spark_and_beam_runs["spark"]
    dataset = ShardDataset(shards_dir(cfg), verify=True, max_open=2)  # rows outlive their shard's mapping
    rows = [dataset[i] for i in range(len(dataset))]
    assert len(dataset._open) == 2
    rebuilt = np.concatenate([s for row in rows for s in reconstruct_samples(row)])
    assert np.array_equal(rebuilt, expected_stream(documents))
    padded = [int((r["segment_ids"] == 0).sum()) for r in rows]
    assert sum(padded[:-1]) == 0 and padded[-1] < dataset.seq_len  # only the corpus's last sequence
    assert all(r[c].shape == (dataset.seq_len,) for r in rows[:3] for c in SEQ_COLUMNS)
    assert dataset.languages == ["en", "zh"] and dataset.vocab_size == 4000


def test_stats_account_for_every_document(spark_and_beam_runs, documents):
    _, summary = spark_and_beam_runs["spark"]
    assert summary["in"]["docs"] == len(documents)
    assert summary["kept"]["docs"] == len(documents) - 3
    assert set(summary["dropped"]) == {"empty", "special_token_id", "token_id_out_of_vocab"}
    report = summary["report"]
    stream = len(expected_stream(documents))  # the language and source mix counts document tokens + <eos>
    assert sum(report["tokens_per_language"].values()) == sum(report["tokens_per_source"].values()) == stream
    assert report["tokens"] == sum(report["tokens_per_shard"])
    spans = sum(report["span_length_hist"].values())  # each adds a [MASK] and a <sop>; a [gMASK] sample adds 1
    assert report["tokens"] == stream + 2 * spans + report["gmask_samples"]
    assert 0.1 < report["loss_token_share"] < 0.8
    assert report["mask_sequences"] + report["gmask_sequences"] == report["sequences"]
    assert sum(report["span_length_hist"].values()) > 100


def test_verify_command_passes_then_catches_corruption(spark_and_beam_runs, tmp_path, capsys):
    cfg, _ = spark_and_beam_runs["beam"]
    assert glmdata(["shards", "verify", shards_dir(cfg)]) == 0
    broken = tmp_path / "broken"
    shutil.copytree(shards_dir(cfg), broken)
    entry = read_manifest(str(broken))["shards"][1]
    dataset = ShardDataset(str(broken))
    first = read_manifest(str(broken))["shards"][0]["samples"]
    columns = {c: np.stack([dataset[first + i][c] for i in range(entry["samples"])]) for c in SEQ_COLUMNS}
    kinds = [dataset[first + i]["kind"] for i in range(entry["samples"])]
    del dataset
    part_b = int(np.argmin(columns["prefix"][0]))
    columns["targets"][0, part_b] += 1  # a Part B target that is not the span's token
    write_shard(str(broken / entry["file"]), columns, kinds)
    assert glmdata(["shards", "verify", str(broken)]) == 1
    assert "sha256 differs" in capsys.readouterr().out
    problems = verify_shards(str(broken), checksums=False)  # the invariants catch it without checksums
    assert problems and all(entry["file"] in p for p in problems), problems
    write_shard(str(broken / entry["file"]), {c: v[:, :128] for c, v in columns.items()}, kinds)
    assert "is not the shard schema" in " ".join(verify_shards(str(broken), checksums=False))


def test_manifest_describes_the_run(spark_and_beam_runs):
    cfg, _ = spark_and_beam_runs["spark"]
    m = read_manifest(shards_dir(cfg))
    assert m["seq_len"] == 256 and m["objective"]["mask_sample_len"] == 64 and m["seed"] == cfg.run.seed
    assert m["special_tokens"]["3"] == "[MASK]" and len(m["tokenizer"]["sha256"]) == 64
    for e in m["shards"]:
        assert sum(e["languages"].values()) == sum(e["sources"].values()) > 0
    assert m["totals"]["tokens"] == sum(e["tokens"] for e in m["shards"])


def test_other_seed_other_shards_same_stream(spark_session_engine, tmp_path, shared_data):
    docs = random_documents(60, seed=9)
    model = tokenizer_model(shared_data)
    cfg, summary = run_shards(tmp_path, spark_session_engine, docs, model, "reseeded")
    base = read_manifest(shards_dir(cfg))
    cfg2 = make_run_config(tmp_path / "reseeded", {"shards": SECTION}, seed=99)
    run_stage(ShardsStage(cfg2), spark_session_engine)
    other = read_manifest(shards_dir(cfg2))
    assert [e["sha256"] for e in base["shards"]] != [e["sha256"] for e in other["shards"]]
    dataset = ShardDataset(shards_dir(cfg2))
    rebuilt = np.concatenate([s for i in range(len(dataset)) for s in reconstruct_samples(dataset[i])])
    assert np.array_equal(rebuilt, expected_stream(docs))


def test_unreadable_part_is_an_error_not_a_crash(spark_session_engine, tmp_path, shared_data):
    docs = random_documents(40, seed=3)
    cfg = make_run_config(tmp_path / "w", {"shards": SECTION})
    workdir = make_encoded_workdir(tmp_path / "w" / "out", tokenizer_model(shared_data), docs, parts=2)
    (workdir / "encode" / "data" / "part-00001.parquet").write_bytes(b"not parquet at all")
    summary = run_stage(ShardsStage(cfg), spark_session_engine)
    assert summary["errors"]["unreadable_parquet"]["bytes"] == len(b"not parquet at all")
    assert summary["kept"]["docs"] == 20
    assert verify_shards(shards_dir(cfg)) == []


def test_config_errors_name_the_key(tmp_path):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="shards.*multiple of mask_sample_len"):
        make_run_config(tmp_path, {"shards": {"seq_len": 300, "mask_sample_len": 64}})
    with pytest.raises(ConfigError, match="shards.mask_share: expected float"):
        make_run_config(tmp_path, {"shards": {"mask_share": "lots"}})


def test_stats_json_is_small(spark_and_beam_runs):
    cfg, _ = spark_and_beam_runs["spark"]
    stats = json.loads(open(f"{shards_dir(cfg)}/stats.json").read())
    assert len(json.dumps(stats)) < 20_000


def test_reads_what_the_encode_stage_writes(spark_session_engine, tmp_path, shared_data):
    """The contract with encode, on the real encode stage: mix-like documents -> encode -> shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.schema import DOC_SCHEMA
    from pipeline.stages.encode import EncodeStage
    from test_shards_data import real_texts, write_marker

    cfg = make_run_config(tmp_path, {"shards": SECTION})
    workdir = tmp_path / "out"
    make_encoded_workdir(workdir, tokenizer_model(shared_data), [])  # the tokenizer stage's model
    shutil.rmtree(workdir / "encode")
    rows = [{"id": d["id"], "text": d["text"], "url": None, "source": d["source"], "source_file": "x",
             "source_offset": i, "crawl_date": None, "lang": d["lang"], "lang_score": 1.0,
             "mix_source": f"{d['lang']}-web"} for i, d in enumerate(real_texts(shared_data)[::4])]
    (workdir / "mix" / "data").mkdir(parents=True)
    schema = DOC_SCHEMA.append(pa.field("mix_source", pa.string()))
    pq.write_table(pa.Table.from_pylist(rows, schema), workdir / "mix" / "data" / "part-00000.parquet")
    write_marker(workdir / "mix", "mix")
    run_stage(EncodeStage(cfg), spark_session_engine)
    summary = run_stage(ShardsStage(cfg), spark_session_engine)
    encoded = pq.read_table(workdir / "encode" / "data").to_pylist()
    assert summary["kept"]["docs"] == len(rows) == len(encoded)
    dataset = ShardDataset(shards_dir(cfg), verify=True)
    rebuilt = np.concatenate([s for i in range(len(dataset)) for s in reconstruct_samples(dataset[i])])
    assert np.array_equal(rebuilt, expected_stream(encoded))
    assert read_manifest(shards_dir(cfg))["sources"] == ["en-web", "zh-web"]


def test_shards_depend_on_document_order_not_on_files(spark_session_engine, tmp_path, shared_data):
    """The same documents in the same order, split into other files and row groups: same bytes."""
    docs = random_documents(120, seed=12)
    model = tokenizer_model(shared_data)
    manifests = []
    for name, parts, row_group in (("a", 3, 40), ("b", 2, 7)):
        cfg = make_run_config(tmp_path / name, {"shards": {**SECTION, "sequences_per_shard": 16}})
        make_encoded_workdir(tmp_path / name / "out", model, docs, parts=parts, row_group_size=row_group)
        run_stage(ShardsStage(cfg), spark_session_engine)
        manifests.append(read_manifest(shards_dir(cfg))["shards"])
    assert len(manifests[0]) > 2 and manifests[0] == manifests[1]


def test_no_valid_document_gives_an_empty_manifest(spark_session_engine, tmp_path, shared_data):
    cfg = make_run_config(tmp_path, {"shards": SECTION})
    make_encoded_workdir(tmp_path / "out", tokenizer_model(shared_data), bad_documents(), parts=1)
    summary = run_stage(ShardsStage(cfg), spark_session_engine)
    assert summary["kept"]["docs"] == 0 and sum(c["docs"] for c in summary["dropped"].values()) == 3
    assert read_manifest(shards_dir(cfg))["shards"] == [] and len(ShardDataset(shards_dir(cfg))) == 0
    assert glmdata(["shards", "verify", shards_dir(cfg)]) == 0


def test_cli_runs_the_stage_and_needs_a_config(tmp_path, shared_data, capsys):
    cfg = make_run_config(tmp_path, {"shards": SECTION}, engine="beam")
    make_encoded_workdir(tmp_path / "out", tokenizer_model(shared_data), random_documents(30, seed=1))
    assert glmdata(["shards", "--config", cfg.path]) == 0
    assert "shards" in capsys.readouterr().out
    assert glmdata(["shards", "verify", shards_dir(cfg)]) == 0
    assert glmdata(["shards"]) == 2
    assert "--config is required" in capsys.readouterr().err


def _tampered_copy(src: str, dst: Path, row_edit=None, manifest_edit=None) -> str:
    """A copy of a shards folder with row 0 of its second shard and/or its manifest changed the way a buggy
    writer would, the manifest's sha256 kept in step (so only the other checks can catch it)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    if row_edit:
        entry, first = manifest["shards"][1], manifest["shards"][0]["samples"]
        dataset = ShardDataset(str(dst))
        columns = {c: np.stack([dataset[first + i][c] for i in range(entry["samples"])]) for c in SEQ_COLUMNS}
        kinds = [dataset[first + i]["kind"] for i in range(entry["samples"])]
        del dataset
        if row_edit is _set_kind:  # write_shard refuses it: a foreign writer's file
            write_shard(str(dst / entry["file"]), columns, kinds)
            table = pa.ipc.open_file(str(dst / entry["file"])).read_all()
            table = table.set_column(table.schema.get_field_index("kind"), table.schema.field("kind"),
                                     pa.array(["garbage"] + kinds[1:]))
            with pa.ipc.new_file(str(dst / entry["file"]), table.schema) as out:
                out.write_table(table)
        else:
            row_edit(columns, kinds)
            write_shard(str(dst / entry["file"]), columns, kinds)
        entry["sha256"] = file_sha256(str(dst / entry["file"]))
    if manifest_edit:
        manifest_edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return str(dst)


def _set_part_a_token(value):
    def edit(columns, kinds):
        columns["tokens"][0, 0] = value
    return edit


def _set_kind(columns, kinds):
    """Row 0's kind set to "garbage" (done on the written file by _tampered_copy)."""


def _edit_manifest(**changes):
    def edit(manifest):
        for path, value in changes.items():
            *parents, key = path.split("__")
            node = manifest
            for p in parents:
                node = node[int(p)] if isinstance(node, list) else node[p]
            node[key] = value(node[key]) if callable(value) else value
    return edit


@pytest.mark.parametrize("row_edit, manifest_edit, said", [
    (_set_part_a_token(-7), None, "a negative token id"),
    (_set_part_a_token(1), None, "<unk> or [sMASK] in the sequence"),
    (_set_part_a_token(5), None, "<unk> or [sMASK] in the sequence"),
    (_set_kind, None, "a kind other than MASK or gMASK"),
    (None, lambda m: m["shards"].append(dict(m["shards"][0])), "a shard listed more than once"),
    (None, _edit_manifest(totals__tokens=lambda n: n + 1), "manifest: totals"),
    (None, _edit_manifest(stream_tokens=lambda n: n + 1), "the shards' languages count"),
    (None, _edit_manifest(special_tokens__3="[gMASK]"), "are not the table of DESIGN.md"),
    (None, _edit_manifest(objective__seq_len=512), "objective.seq_len 512 but seq_len 256"),
    (None, _edit_manifest(languages=["en"]), "shards count languages ['zh'] that the languages list lacks"),
    (None, lambda m: m["shards"][0].pop("loss_tokens"), "manifest: shards[0]: loss_tokens missing or not an int"),
    (None, _edit_manifest(shards__0__languages=["en", "zh"]), "manifest: shards[0]: languages missing or not a dict"),
])
def test_verify_catches_bad_values_and_a_manifest_at_odds_with_itself(spark_and_beam_runs, tmp_path, row_edit,
                                                                      manifest_edit, said):
    cfg, _ = spark_and_beam_runs["beam"]
    broken = _tampered_copy(shards_dir(cfg), tmp_path / "broken", row_edit, manifest_edit)
    problems = verify_shards(broken)
    assert any(said in p for p in problems), problems


def test_verify_checks_the_tokenizer_the_manifest_names(spark_and_beam_runs, tmp_path):
    cfg, _ = spark_and_beam_runs["beam"]
    model = read_manifest(shards_dir(cfg))["tokenizer"]["file"]
    model = str((Path(shards_dir(cfg)) / model).resolve())
    assert verify_shards(_tampered_copy(shards_dir(cfg), tmp_path / "same", None,
                                        _edit_manifest(tokenizer__file=model))) == []
    other = tmp_path / "other.model"
    other.write_bytes(Path(model).read_bytes() + b"\0")
    problems = verify_shards(_tampered_copy(shards_dir(cfg), tmp_path / "other", None,
                                            _edit_manifest(tokenizer__file=str(other))))
    assert any("tokenizer sha256" in p and "built with another model" in p for p in problems), problems
