"""Dedup's scratch files on an object store (moto's S3 server in this process): a rename there is a copy
of the object, so the map passes write their files once, in place, under names of their task attempts,
and the later steps read the names the tasks returned (`pipeline.storage.scratch_sink`); neither a
failed attempt's file (closing a ParquetWriter on the error path completes its upload) nor a killed one's
is ever read. Local disks keep renaming into place."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.dedup import index, passes
from pipeline.dedup.fixtures import write_finished_upstream
from pipeline.dedup.index import (ALL_KEYS, INDEX_SCHEMA, IndexPart, find_neighbours, index_node, keys_of, shingle_lists,
                                  write_run_part)
from pipeline.stages.dedup import DedupStage

from conftest import REPO, make_run_config
from test_command_arguments import LocalEngine
from test_s3 import BUCKET, s3_endpoint  # noqa: F401  (the moto server fixture)

TEXTS = ["the quick brown fox jumps over the lazy dog near the river bank today",
         "a completely different page about baking bread with flour water and salt",
         "notes on the weather in spring: rain in the morning and sun after noon"]


@pytest.fixture
def store_copies(s3_endpoint, monkeypatch):
    """(source key, destination key) of every copy the S3 server makes (CopyObject), whoever asks."""
    from moto.s3.models import S3Backend

    copies, copy_object = [], S3Backend.copy_object

    def counted(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs):
        copies.append((src_key.name, dest_key_name))
        return copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "copy_object", counted)
    return copies


def _params(tmp_path) -> passes.DedupParams:
    return DedupStage(make_run_config(tmp_path / "cfg", {"dedup": {}})).params


def _indexed(sig_files: list[str], index: str) -> list[IndexPart]:
    """The documents of `sig_files` as one indexed run's parts (local): a later run finds each again."""
    parts = []
    for i, path in enumerate(sig_files):
        sig = pq.read_table(storage.open_input(path))
        n = sig.num_rows
        docs = pa.table({"node": [index_node(0, v) for v in sig.column("node").to_pylist()], "id": sig.column("id"),
                         "run": ["r0"] * n, "survivor": sig.column("id"), "survivor_run": ["r0"] * n,
                         "text_key": sig.column("text_key"), "url_key": sig.column("url_key"),
                         "n_shingles": sig.column("n_shingles"), "bands": sig.column("bands"),
                         "shingles": shingle_lists(sig.column("shingles").combine_chunks())}, INDEX_SCHEMA)
        write_run_part(storage.join(index, "runs", "r0"), storage.part_name(i), docs)
        stored = f"runs/r0/docs/{storage.part_name(i)}"
        parts.append(IndexPart(storage.join(index, keys_of(stored)), storage.join(index, stored), 0, "r0", stored))
    return parts


def test_the_map_passes_write_their_files_on_s3_without_a_copy(tmp_path, store_copies, monkeypatch):
    """The signature pass (signatures, paragraph keys) and the index probe (keys, matches, neighbours)
    on S3: each file is written once, never copied (before: one copy each), under a name no other
    attempt writes and that Spark's reader does not skip as hidden; the steps after take the files by
    the names the tasks returned, and the probe finds every indexed document again."""
    monkeypatch.setattr(index, "BUCKET_BITS", 1)  # two probe tasks, not 64: each reads every new key file
    work = f"s3://{BUCKET}/copies-{tmp_path.name}/.tmp/dedup-run/_work"
    upstream = f"s3://{BUCKET}/copies-{tmp_path.name}"
    write_finished_upstream(upstream, [[{"id": f"p{p}d{i}", "text": t} for i, t in enumerate(TEXTS)] for p in (0, 1)])
    task = passes.SignatureTask(_params(tmp_path), storage.join(work, "signatures"), storage.join(work, "paragraphs"))
    signed = [task((p, storage.join(upstream, "pii", "data", storage.part_name(p)))) for p in (0, 1)]
    neighbours, found = find_neighbours(LocalEngine(), _indexed([r["signatures"] for r in signed], str(tmp_path / "i")),
                                        [r["signatures"] for r in signed], storage.join(work, "index_probe"),
                                        ALL_KEYS, replacing=False)
    assert found["existing_matches"] == 2 * len(TEXTS)
    written = [r[kind] for r in signed for kind in ("signatures", "paragraphs")] + neighbours
    assert [f.rsplit("/", 1)[-1][:len("part-00000-")] for f in written] == ["part-00000-", "part-00000-",
                                                                            "part-00001-", "part-00001-",
                                                                            "part-00000-", "part-00001-"]
    assert not any(f.rsplit("/", 1)[-1].startswith((".", "_")) for f in written)
    assert sorted(storage.expand(storage.join(work, "signatures"))) == [r["signatures"] for r in signed]
    assert [c for c in store_copies if "/_work/" in c[1]] == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_failed_attempt_leaves_no_file_a_later_step_reads(tmp_path, where, request, monkeypatch):
    """An attempt that raises after writing rows leaves nothing at the part's name. On S3 its error path
    completes the upload (the writer's close writes a footer: a valid file of the rows so far) and then
    deletes it; should that deletion fail too, the file keeps its attempt's name, which no task returned:
    the retry's file, named by its result, holds every row. Locally the file is renamed into place."""
    if where == "s3":
        request.getfixturevalue("s3_endpoint")
    base = f"s3://{BUCKET}/failed-{tmp_path.name}" if where == "s3" else str(tmp_path / "work")
    write_finished_upstream(base, [[{"id": f"d{i}", "text": f"{t} {i}"} for i, t in enumerate(TEXTS * 2)]])
    sig_dir = storage.join(base, "signatures")
    task = passes.SignatureTask(_params(tmp_path), sig_dir, batch_size=2)
    unit = (0, storage.join(base, "pii", "data", storage.part_name(0)))
    split, calls = passes.split_selected, []

    def fails_at_the_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("the input went away")
        return split(*args)

    monkeypatch.setattr(passes, "split_selected", fails_at_the_second_batch)
    monkeypatch.setattr(storage, "rmtree", lambda uri: (_ for _ in ()).throw(OSError("the clean-up failed too")))
    with pytest.raises(ConnectionError):
        task(unit)
    monkeypatch.undo()
    left = storage.expand(sig_dir) if storage.exists(sig_dir) else []
    assert not storage.exists(storage.join(sig_dir, storage.part_name(0)))
    if where == "s3":  # the failed attempt's rows, complete-looking, under its own name
        assert len(left) == 1 and pq.read_metadata(storage.open_input(left[0])).num_rows == 2
    else:
        assert left == []  # its temporary name: hidden, and left beside nothing
    retried = task(unit)
    assert retried["signatures"] not in left
    assert pq.read_metadata(storage.open_input(retried["signatures"])).num_rows == len(TEXTS) * 2
    if where == "local":
        assert retried["signatures"] == storage.join(sig_dir, storage.part_name(0))


KILLED_WRITER = """
import os, signal, sys
import pyarrow as pa
from pipeline import storage
sink = storage.scratch_sink(sys.argv[1], "part-00000.parquet", pa.schema([("b", pa.binary())]))
sink.write(pa.table({"b": [os.urandom(1 << 20) for _ in range(12)]}))  # past a multipart upload's first part
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_attempt_leaves_no_object(tmp_path, s3_endpoint):
    """What the names rely on: an object appears only when its upload completes, so a task killed
    mid-write (before its close) leaves nothing at all."""
    folder = f"s3://{BUCKET}/killed-{tmp_path.name}"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, folder], cwd=REPO, env=os.environ, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert not storage.exists(folder) or storage.expand(folder) == []
