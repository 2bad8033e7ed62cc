"""Shards and the Megatron export with the workdir on an S3-compatible endpoint (moto's server):
the same bytes as a local run."""
from __future__ import annotations

from conftest import make_run_config
from pipeline import storage
from pipeline.engines.beam import BeamEngine
from pipeline.export_megatron import export_megatron
from pipeline.runner import run_stage
from pipeline.stages.shards import ShardsStage, encode_stats
from test_s3 import BUCKET, s3_endpoint, upload_tree  # noqa: F401  (the moto server fixture)
from test_shards import SECTION
from test_shards_data import make_encoded_workdir, random_documents, real_documents, tokenizer_model
from trainer import shard_format
from trainer.shard_format import read_manifest


def test_shards_and_export_on_s3_equal_a_local_run(tmp_path, s3_endpoint, shared_data, monkeypatch):  # noqa: F811
    """Also: on S3 (where a rename is a copy) a shard stays under its temporary name until the stage's
    commit copies it into place, once."""
    renamed = []
    real_atomic_write = shard_format._atomic_write
    monkeypatch.setattr(shard_format, "_atomic_write", lambda fs, path, write, rename=True: renamed.append(
        (path.endswith(".arrow"), rename)) or real_atomic_write(fs, path, write, rename))
    docs = real_documents(shared_data)[:40] + random_documents(40, seed=8)
    local = make_encoded_workdir(tmp_path / "local" / "out", tokenizer_model(shared_data), docs)
    remote = f"s3://{BUCKET}/shards-test/work"
    upload_tree(local, remote)
    results = {}
    for name, workdir in (("local", str(local)), ("s3", remote)):
        cfg = make_run_config(tmp_path / name, {"shards": SECTION}, engine="beam")
        cfg.run.workdir = workdir
        engine = BeamEngine(cfg)
        run_stage(ShardsStage(cfg), engine)
        fs, shards_dir = storage.filesystem(storage.join(workdir, "shards"))
        prefix = storage.join(workdir, "export", "corpus")
        export_megatron(cfg, engine, prefix, encode_stats(workdir))
        results[name] = (read_manifest(shards_dir, filesystem=fs)["shards"],
                         [storage.read_bytes(prefix + ext) for ext in (".bin", ".idx")],
                         [file for file, _ in storage.tree(storage.join(workdir, "shards"))[1]])  # stats.json's size varies
        shard_renames = {rename for is_shard, rename in renamed if is_shard}
        assert shard_renames == {name == "local"}, (name, shard_renames)
        renamed.clear()
    assert len(results["s3"][0]) > 1
    assert results["s3"] == results["local"]
