"""Incremental dedup against a persistent index: equivalence with deduplicating everything at once
(demo corpus split in two, Spark and Beam), atomic append, the lease, and a resumed run."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from pipeline import storage
from pipeline.dedup.fixtures import read_dedup_output, write_finished_upstream
from pipeline.dedup.index import DedupIndex, IndexBusy
from pipeline.runner import run_stage
from pipeline.stage import StageStats
from pipeline.stages.dedup import DedupStage

from conftest import make_run_config
from demo_runs import DEMO, demo_sources
from test_s3 import BUCKET, s3_endpoint  # noqa: F401 (a fixture)

# Both runs rank snapshot A's documents first (earlier crawl), as the index does ("old wins").
OLD_FIRST = ["crawl_date", "q_score", "noise", "id"]
SNAPSHOT_DATES = {"A": "2024-01-01T00:00:00Z", "B": "2024-02-01T00:00:00Z"}
# The tests on hand-made documents run without paragraph dedup, which the index knows nothing of and which
# finds nothing to remove in these one-line documents, but costs every run a pipeline (Beam: ~0.7 of ~5.3 CPU s).
# The demo snapshots keep it: their equivalence holds with the stage as configured.
NO_PARAGRAPHS = {"paragraphs": {"enabled": False}}
# A snapshot deduplicated into its own index, <workdir>/dedup_index: relative, so a copy of the runs'
# folder (`_copy`) keeps the config, and so the identity in the index, of the run that built it.
OWN_INDEX = {"index": "dedup_index", "against": ["dedup_index"]}


@pytest.fixture(scope="module")
def demo_snapshots(tmp_path_factory):
    """The demo corpus through langid (Beam; dedup hashes the text as langid left it), split in two
    snapshots by a hash of each id."""
    from pipeline.stages import load_config
    from pipeline.demo_corpus import generate
    from pipeline.engines.beam import BeamEngine
    from pipeline.run_all import run_pipeline

    tmp = tmp_path_factory.mktemp("demo")
    generate(tmp / "corpus")
    cfg = load_config(DEMO, {"run.workdir": str(tmp / "work"), "ingest.sources": demo_sources(tmp / "corpus"),
                             "run.engine": "beam"})
    run_pipeline(cfg, BeamEngine(cfg), last="langid", report=False, console=Console(quiet=True))
    table = pa.concat_tables(pq.read_table(p) for p in storage.expand(str(tmp / "work" / "langid" / "data")))
    half = pa.array([hashlib.sha1(i.encode()).digest()[0] % 2 for i in table.column("id").to_pylist()])
    snapshots = {}
    for name, bit in (("A", 0), ("B", 1)):
        t = table.filter(pa.compute.equal(half, bit))
        t = t.set_column(t.schema.get_field_index("crawl_date"), "crawl_date",
                         pa.array([SNAPSHOT_DATES[name]] * t.num_rows, pa.string()))
        snapshots[name] = t
    return snapshots


def _write_upstream(workdir: str, tables: list[pa.Table], fingerprint: str) -> None:
    """A finished stage before dedup holding `tables` (one part file each)."""
    data = storage.join(workdir, DedupStage.upstream, "data")
    storage.makedirs(data)
    for i, t in enumerate(tables):
        pq.write_table(t, storage.join(data, f"part-{i:05d}.parquet"))
    storage.write_text(storage.join(workdir, DedupStage.upstream, "_SUCCESS"),
                       json.dumps({"config_hash": "snapshot", "input_fingerprint": fingerprint}))


def _dedup(tmp_path, engine, name: str, tables: list[pa.Table], section: dict) -> tuple[dict, dict]:
    cfg = make_run_config(tmp_path / name, {"dedup": section}, engine=engine.name)
    _write_upstream(cfg.run.workdir, tables, name)
    summary = run_stage(DedupStage(cfg), engine)
    StageStats.from_dict(summary).check_conservation(name)
    return summary, read_dedup_output(storage.join(cfg.run.workdir, "dedup"))


def _survivors_of_rejected(out: dict) -> dict[str, tuple[str, str]]:
    """id -> (reason without `_existing`, survivor id without ` in run ...`)."""
    return {doc: (reason.removesuffix("_existing"), detail.split(" in run ")[0])
            for doc, (reason, detail) in out["rejected"].items()}


@pytest.mark.slow  # six dedup runs on the demo corpus, three per engine
def test_snapshot_b_against_a_index_equals_a_plus_b_together(tmp_path, engines, demo_snapshots):
    a, b = demo_snapshots["A"], demo_snapshots["B"]
    for name, engine in engines.items():
        base = tmp_path / name
        _, together = _dedup(base, engine, "AB", [a, b], {"survivor_order": OLD_FIRST})
        _, first = _dedup(base, engine, "A", [a], {"survivor_order": OLD_FIRST})
        index_a = str(base / "A" / "out" / "dedup_index")
        summary, second = _dedup(base, engine, "B", [b], {"survivor_order": OLD_FIRST, "against": [index_a]})
        existing = {k: v for k, v in second["rejected"].items() if v[0].endswith("_existing")}
        assert existing, f"{name}: the split put no copies across the snapshots; the test checks nothing"
        assert all(" in run 00000-" in detail for _, detail in existing.values())
        assert summary["extra"]["index_runs_against"] == 1 and summary["extra"]["existing_matches"] > 0
        assert set(first["kept"]) | set(second["kept"]) == set(together["kept"]), name
        assert {**_survivors_of_rejected(first), **_survivors_of_rejected(second)} == _survivors_of_rejected(together)
        # B's own index holds B's documents, each with its survivor; A's index is untouched by B's run
        assert [r["run"] for r in DedupIndex(index_a).generation()["runs"]] == [
            r["run"] for r in json.loads((base / "A" / "out" / "dedup_index" / "_manifest" / "gen-000001.json")
                                         .read_text())["runs"]]
        b_index = DedupIndex(str(base / "B" / "out" / "dedup_index"))
        b_rows = pq.read_table([p.docs for p in b_index.parts(b_index.generation())], columns=["id", "survivor"]).to_pylist()
        assert sorted(r["id"] for r in b_rows) == sorted([*second["kept"], *second["rejected"]])
        assert {r["id"]: r["survivor"] for r in b_rows if r["id"] != r["survivor"]} == {
            doc: detail.split(" in run ")[0] for doc, (_, detail) in second["rejected"].items()}


# -- the index itself, on small fixtures (Beam: no session to start)

def _docs(prefix: str, n: int, shared: int = 0) -> list[dict]:
    """n unrelated documents; the first `shared` have the same text as snapshot "a"'s."""
    def text(seed: str) -> str:
        words = [hashlib.sha1(f"{seed}-{j}".encode()).hexdigest()[:6] for j in range(60)]
        return " ".join(words) + "."
    return [{"id": f"{prefix}{i}", "text": text(f"a{i}" if i < shared else f"{prefix}{i}"), "q_score": 0.5}
            for i in range(n)]


def _config(tmp_path, name: str, section: dict, engine: str = "beam"):
    """The config of run `name` (workdir <tmp_path>/<name>/out): `section` over NO_PARAGRAPHS."""
    return make_run_config(tmp_path / name, {"dedup": {**NO_PARAGRAPHS, **section}}, engine=engine)


def _own_index(tmp_path, name: str) -> str:
    """Where OWN_INDEX puts run `name`'s index."""
    return str(Path(tmp_path) / name / "out" / "dedup_index")


def _copy(runs: Path, tmp_path) -> None:
    """A module fixture's runs into this test's tmp_path, for a test that goes on from them (the fixture's
    folder stays as it was for the next test). copytree keeps mtimes, which the index's clean-up compares."""
    shutil.copytree(runs, tmp_path, dirs_exist_ok=True)


def _run(tmp_path, name: str, docs: list[dict], section: dict, fingerprint: str | None = None):
    from pipeline.engines.beam import BeamEngine

    cfg = _config(tmp_path, name, section)
    write_finished_upstream(cfg.run.workdir, [docs[0::2], docs[1::2]])
    if fingerprint:
        storage.write_text(storage.join(cfg.run.workdir, DedupStage.upstream, "_SUCCESS"),
                           json.dumps({"config_hash": "fixture", "input_fingerprint": fingerprint}))
    return cfg, run_stage(DedupStage(cfg), BeamEngine(cfg), force=True)


def _snapshot_a() -> list[dict]:
    return _with_urls(_docs("a", 6))


@pytest.fixture(scope="module")
def indexed_a(tmp_path_factory) -> Path:
    """The runs' folder of `_run(folder, "a", _snapshot_a(), OWN_INDEX, "snapshot-a")`: snapshot "a" in
    its own index at `_own_index(folder, "a")`. Tests read it there or append to a copy (`_copy`)."""
    folder = tmp_path_factory.mktemp("indexed-a")
    _run(folder, "a", _snapshot_a(), OWN_INDEX, "snapshot-a")
    return folder


def test_append_is_atomic_and_a_resumed_run_does_not_append_twice(tmp_path, monkeypatch, indexed_a):
    _copy(indexed_a, tmp_path)
    shared = _own_index(tmp_path, "a")
    section = {"index": shared, "against": [shared]}
    index = DedupIndex(shared)
    assert index.generation()["generation"] == 1

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")

    monkeypatch.setattr(DedupIndex, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "b", _docs("b", 6, shared=2), section, "snapshot-b")
    monkeypatch.undo()
    # the killed run's files are there but unreferenced: the index is still generation 1, lease free
    run_a = index.generation()["runs"][0]["run"]
    assert len(storage.listdir(storage.join(shared, "runs"))) == 2
    assert index.generation()["generation"] == 1 and not storage.exists(storage.join(shared, "_LOCK"))
    assert len(pq.read_table([p.docs for p in index.parts(index.generation())]).column("id")) == 6

    cfg, summary = _run(tmp_path, "b", _docs("b", 6, shared=2), section, "snapshot-b")
    out = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
    assert out["rejected"] == {"b0": ("dup_exact_existing", f"a0 in run {run_a}"),
                               "b1": ("dup_exact_existing", f"a1 in run {run_a}")}
    assert summary["dropped"]["dup_exact_existing"]["docs"] == 2
    assert index.generation()["generation"] == 2
    rows = pq.read_table([p.docs for p in index.parts(index.generation())], columns=["id", "survivor", "survivor_run"]).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)])
    assert [(r["survivor"], r["survivor_run"]) for r in rows if r["id"] == "b0"] == [("a0", run_a)]
    # the same run again (a resume after a kill that followed the append): it finds itself in the
    # index, neither reads nor appends itself, and gives the same output
    cfg, again = _run(tmp_path, "b", _docs("b", 6, shared=2), section, "snapshot-b")
    assert read_dedup_output(storage.join(cfg.run.workdir, "dedup")) == out
    assert index.generation()["generation"] == 2


def test_settings_mismatch_names_the_key(tmp_path, indexed_a):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"dedup.en_ngram is 3 but the index .* was built with 5"):
        _run(tmp_path, "b", _docs("b", 2), {"index": None, "against": [_own_index(indexed_a, "a")], "en_ngram": 3},
             "snapshot-b")


def test_lease_refuses_a_second_appender_and_takes_over_a_dead_ones(tmp_path):
    index = DedupIndex(str(tmp_path / "index"))
    lock = tmp_path / "index" / "_LOCK"
    with index.lease():
        with pytest.raises(IndexBusy, match="dedup index .* is held by another run"):
            with index.lease():
                pass
        # another process cannot take it either
        code = ("import sys; from pipeline.dedup.index import DedupIndex, IndexBusy\n"
                f"try:\n    DedupIndex({index.path!r}).lease().__enter__()\n"
                "except IndexBusy:\n    sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 3
    assert not lock.exists()
    # a holder that died (its pid is gone) or stopped beating leaves a stale lease: taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for stale in ({"pid": int(dead.stdout), "heartbeat": time.time()}, {"pid": os.getpid(), "heartbeat": 0}):
        lock.write_text(json.dumps({"run_id": "killed", "host": socket.gethostname(), "started": 0, **stale}))
        with index.lease() as held:
            assert json.loads(lock.read_text())["run_id"] == held.run_id


def _chunk_bytes(path: str) -> int:
    meta = pq.read_metadata(path)
    return sum(meta.row_group(g).column(c).total_compressed_size
               for g in range(meta.num_row_groups) for c in range(meta.num_columns))


def test_a_run_reads_only_the_index_row_groups_its_keys_can_match(tmp_path):
    shared = str(tmp_path / "index")
    _run(tmp_path, "a", _docs("a", 600), {"index": shared}, "snapshot-a")
    index = DedupIndex(shared)
    parts = index.parts(index.generation())
    assert len(parts) == 2
    for part in parts:  # a key row group holds one bucket, its keys sorted; documents in several groups by node
        keys = pq.ParquetFile(part.keys)
        for g in range(keys.metadata.num_row_groups):
            group = keys.read_row_group(g, columns=["bucket", "band", "key"])
            assert len(set(group.column("bucket").to_pylist())) == 1
            assert group.to_pylist() == sorted(group.to_pylist(), key=lambda r: (r["band"], r["key"]))
        nodes = pq.read_table(part.docs, columns=["node"]).column("node").to_pylist()
        assert nodes == sorted(nodes) and pq.read_metadata(part.docs).num_row_groups > 1
    key_bytes = sum(_chunk_bytes(p.keys) for p in parts)
    doc_bytes = sum(_chunk_bytes(p.docs) for p in parts)

    cfg, summary = _run(tmp_path, "b", _docs("b", 2, shared=1), {"index": None, "against": [shared]}, "snapshot-b")
    out = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
    assert out["rejected"] == {"b0": ("dup_exact_existing", f"a0 in run {index.generation()['runs'][0]['run']}")}
    assert summary["extra"]["existing_matches"] == 1
    # two new documents: some buckets' key row groups, and one row group of one docs file
    assert 0 < summary["extra"]["index_bytes_read"] < key_bytes + doc_bytes / 2


def test_two_indexes_keep_their_documents_apart(tmp_path, indexed_a):
    """Runs of different indexes are numbered from 0 in each, so their documents' node numbers would
    collide: against both, a copy of X's first document and a copy of Y's first document (same part and
    row in each index) must each be rejected for their own original. X: snapshot "a" (`indexed_a`)."""
    index_x, index_y = _own_index(indexed_a, "a"), str(tmp_path / "index-y")
    y_docs = _docs("y", 4)
    _run(tmp_path, "y", y_docs, {"index": index_y}, "snapshot-y")
    # a copy of a0's text (without its URL, which alone would match it too)
    new = [{**_docs("a", 1)[0], "id": "z0"}, {**y_docs[0], "id": "z1"}] + _docs("z", 4)[2:]
    cfg, summary = _run(tmp_path, "z", new, {"index": None, "against": [index_x, index_y]}, "snapshot-z")
    out = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
    run_x, run_y = (DedupIndex(p).generation()["runs"][0]["run"] for p in (index_x, index_y))
    assert out["rejected"] == {"z0": ("dup_exact_existing", f"a0 in run {run_x}"),
                               "z1": ("dup_exact_existing", f"y0 in run {run_y}")}


def _snapshot_with_a_copy() -> list[dict]:
    docs = _with_urls(_docs("a", 6))
    docs[1]["text"] = docs[0]["text"]  # a copy within the snapshot: indexed too, with its survivor
    return docs


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory, spark_session_engine) -> tuple[Path, dict[str, dict]]:
    """`_snapshot_with_a_copy()` deduplicated into its own index (OWN_INDEX) on each engine: the runs'
    folder (run <engine> in <folder>/<engine>, config `_config(folder, engine, OWN_INDEX, engine)`) and
    each run's summary. The re-run tests go on from a copy (`_copy`)."""
    from pipeline.engines.beam import BeamEngine

    folder = tmp_path_factory.mktemp("first-runs")
    docs, summaries = _snapshot_with_a_copy(), {}
    for name in ("spark", "beam"):
        cfg = _config(folder, name, OWN_INDEX, name)
        write_finished_upstream(cfg.run.workdir, [docs[0::2], docs[1::2]])
        summaries[name] = run_stage(DedupStage(cfg), spark_session_engine if name == "spark" else BeamEngine(cfg))
    return folder, summaries


def test_rerunning_a_snapshot_against_its_own_index_keeps_what_it_kept(tmp_path, engines, first_runs):
    """`index: X, against: [X]`, the same documents again after an upstream change (a new fingerprint) or
    a new survivor_order: an indexed document with a new one's id is that document's earlier run, which
    the new one replaces; it is never its own duplicate, and copies point at this run's survivors."""
    runs, firsts = first_runs
    _copy(runs, tmp_path)
    for name, engine in engines.items():
        cfg = _config(tmp_path, name, OWN_INDEX, name)
        expected = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
        assert expected["rejected"] == {"a1": ("dup_exact", "a0")}, name
        again = _rerun(cfg, engine, "upstream re-ran")
        assert read_dedup_output(storage.join(cfg.run.workdir, "dedup")) == expected, name
        assert again["kept"] == firsts[name]["kept"], name
        # another dump laid out the same way (its pages without URLs): a0 is another document under the
        # same id, b1 a copy of the indexed a0, which still wins
        other = _config(tmp_path, f"{name}-other", {"index": None, "against": [_own_index(tmp_path, name)]}, name)
        write_finished_upstream(other.run.workdir, [[{**_docs("x", 1)[0], "id": "a0"},
                                                     {**_docs("a", 1)[0], "id": "b1"}]])
        run_stage(DedupStage(other), engine)
        out = read_dedup_output(storage.join(other.run.workdir, "dedup"))
        assert set(out["kept"]) == {"a0"} and out["rejected"]["b1"][0] == "dup_exact_existing", (name, out)


def test_against_must_name_an_existing_index_resolved_like_index(tmp_path):
    """A mistyped `against` would deduplicate against nothing: refused when the stage is built. A relative
    path is under the workdir, as `index` is, so `against: [dedup_index]` names this run's own index
    (which may not exist before its first run)."""
    from pipeline.config import ConfigError

    for against in (str(tmp_path / "nowhere"), "other_index"):
        cfg = make_run_config(tmp_path / "w", {"dedup": {"against": [against]}})
        expected = against if against.startswith("/") else f"{cfg.run.workdir}/{against}"
        with pytest.raises(ConfigError, match=f"dedup.against: no index at {expected} "):
            DedupStage(cfg)
    cfg = make_run_config(tmp_path / "w", {"dedup": {"against": ["dedup_index"]}})
    assert DedupStage(cfg).against[0].path == f"{cfg.run.workdir}/dedup_index"


def _indexed_rows(path: str, columns: list[str]) -> list[dict]:
    """The rows the index's latest generation holds (what a later run deduplicates against)."""
    index = DedupIndex(path)
    return pq.read_table([p.docs for p in index.parts(index.generation())], columns=columns).to_pylist()


def _with_urls(docs: list[dict]) -> list[dict]:
    return [{**d, "url": f"https://example.org/{d['id']}"} for d in docs]


def _rerun(cfg, engine, fingerprint: str) -> dict:
    """The same snapshot's dedup again, after its upstream re-ran (a new input fingerprint)."""
    storage.write_text(storage.join(cfg.run.workdir, DedupStage.upstream, "_SUCCESS"),
                       json.dumps({"config_hash": "fixture", "input_fingerprint": fingerprint}))
    return run_stage(DedupStage(cfg), engine)


def test_a_rerun_retires_the_indexed_rows_it_replaces(tmp_path, engines, first_runs):
    """`index: X, against: [X]`, a snapshot re-run after an upstream change: X then holds one row per
    document (the re-run's), and a later snapshot with a page that only the retired version had is kept."""
    docs = _snapshot_with_a_copy()
    changed = [dict(d) for d in docs]
    changed[2]["text"] = _docs("e", 1)[0]["text"]  # the upstream change rewrote a2's text: same id and URL
    _copy(first_runs[0], tmp_path)
    for name, engine in engines.items():
        index = _own_index(tmp_path, name)
        cfg = _config(tmp_path, name, OWN_INDEX, name)
        write_finished_upstream(cfg.run.workdir, [changed[0::2], changed[1::2]])
        summary = _rerun(cfg, engine, "upstream re-ran")
        rows = _indexed_rows(index, ["id", "run", "survivor"])
        assert sorted(r["id"] for r in rows) == sorted(d["id"] for d in docs), name
        run_b = DedupIndex(index).generation()["runs"][-1]["run"]
        assert {r["run"] for r in rows} == {run_b} and {r["id"]: r["survivor"] for r in rows}["a1"] == "a0", name
        assert summary["extra"]["index_rows_retired"] == 6, name
        # a later snapshot: a page with a2's old text (only the retired version had it) is new
        later = _config(tmp_path, f"{name}-later", {"index": None, "against": [index]}, name)
        write_finished_upstream(later.run.workdir, [[{**docs[2], "id": "c0", "url": "https://example.org/c0"},
                                                     {**changed[2], "id": "c1", "url": "https://example.org/c1"}]])
        run_stage(DedupStage(later), engine)
        out = read_dedup_output(storage.join(later.run.workdir, "dedup"))
        assert set(out["kept"]) == {"c0"} and out["rejected"]["c1"] == ("dup_exact_existing", f"a2 in run {run_b}"), \
            (name, out)


def test_a_rerun_killed_before_its_commit_leaves_the_index_as_it_was(tmp_path, monkeypatch, indexed_a):
    _copy(indexed_a, tmp_path)
    index_path, section, docs = _own_index(tmp_path, "a"), OWN_INDEX, _snapshot_a()
    index = DedupIndex(index_path)
    before = index.generation()
    rows = _indexed_rows(index_path, ["id", "run", "survivor"])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")

    fewer = docs[:5]  # the upstream change dropped a5: its indexed row stays, alone in its part
    monkeypatch.setattr(DedupIndex, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "a", fewer, section, "snapshot-a re-ran")
    monkeypatch.undo()
    # the parts without the retired rows are written but unreferenced: generation 1, whole and readable
    assert storage.expand(storage.join(index.run_dir(before["runs"][0]["run"]), "rev-000002"))
    assert index.generation() == before and not storage.exists(storage.join(index_path, "_LOCK"))
    assert _indexed_rows(index_path, ["id", "run", "survivor"]) == rows

    _, summary = _run(tmp_path, "a", fewer, section, "snapshot-a re-ran")
    assert summary["extra"]["index_rows_retired"] == 5
    latest = index.generation()
    assert latest["generation"] == 2 and latest["runs"][0]["retired"] == 5
    assert sorted((r["id"], r["run"]) for r in _indexed_rows(index_path, ["id", "run"])) == sorted(
        [(d["id"], latest["runs"][1]["run"]) for d in fewer] + [("a5", latest["runs"][0]["run"])])
    # the first run has rows retired: its identity again is a new run (which retires the rows of both),
    # not a resume of one the index no longer holds whole
    _, summary = _run(tmp_path, "a", docs, section, "snapshot-a")
    assert summary["extra"]["index_rows_retired"] == 6 and index.generation()["generation"] == 3
    assert {r["run"] for r in _indexed_rows(index_path, ["run"])} == {index.generation()["runs"][-1]["run"]}
    assert sorted(r["id"] for r in _indexed_rows(index_path, ["id"])) == sorted(d["id"] for d in docs)
    # generation 3's commit deleted the first run's parts, which only generation 1 listed, and its manifest
    assert storage.listdir(index.run_dir(latest["runs"][0]["run"])) == ["rev-000002"]
    assert storage.listdir(index.manifest_dir) == ["gen-000002.json", "gen-000003.json"]


def test_a_rerun_matching_by_fewer_keys_still_finds_every_row_it_replaces(tmp_path):
    """With URL matching off, a document whose text the upstream change rewrote shares no key the run
    matches by with its indexed self; the rows it replaces are still found (by URL) and retired."""
    index_path = str(tmp_path / "index")
    section = {"index": index_path, "against": [index_path], "url": False}
    docs = _with_urls(_docs("a", 6))
    _run(tmp_path, "a", docs, section, "snapshot-a")
    changed = [dict(d) for d in docs]
    changed[2]["text"] = _docs("e", 1)[0]["text"]
    cfg, summary = _run(tmp_path, "a", changed, section, "snapshot-a re-ran")
    assert summary["extra"]["index_rows_retired"] == 6 and summary["extra"]["existing_matches"] == 5
    assert sorted(r["id"] for r in _indexed_rows(index_path, ["id"])) == sorted(d["id"] for d in docs)
    assert read_dedup_output(storage.join(cfg.run.workdir, "dedup"))["rejected"] == {}


# -- the re-run's indexed rows on the engines: one join by id, replaced rows only where retired

def _signatures(tmp_path, name: str, parts: list[list[dict]]) -> tuple[str, pa.Table]:
    """The signature files of `parts` (SignatureTask run here, no engine) and their rows."""
    from pipeline.dedup.passes import SignatureTask

    cfg = make_run_config(tmp_path / name, {"dedup": {**NO_PARAGRAPHS, "index": None}})
    write_finished_upstream(cfg.run.workdir, parts)
    stage = DedupStage(cfg)
    sig_dir = str(tmp_path / name / "signatures")
    task = SignatureTask(stage.params, sig_dir, selection=stage.selection)
    for unit in enumerate(sorted(storage.expand(storage.join(cfg.run.workdir, "pii", "data")))):
        task(unit)
    return sig_dir, pq.read_table(sig_dir)


def _as_neighbours(sig: pa.Table, folder: str) -> list[str]:
    """`sig`'s rows as an index's run "r0" would hold them, found by a new run: one neighbour file per
    part (indexed part = upstream part), every row in the graph."""
    from pipeline.dedup.index import NEIGHBOUR_SCHEMA, index_node

    files = []
    for part in sorted(set(sig.column("part").to_pylist())):
        rows = [{**r, "node": index_node(0, r["node"]), "run": "r0", "survivor": r["id"], "survivor_run": "r0",
                 "file": part, "in_graph": True} for r in sig.to_pylist() if r["part"] == part]
        files.append(f"{folder}/part-{part:05d}.parquet")
        storage.makedirs(folder)
        pq.write_table(pa.Table.from_pylist(rows, NEIGHBOUR_SCHEMA), files[-1])
    return files


@pytest.fixture
def rerun_inputs(tmp_path):
    """An indexed snapshot a0..a3 (indexed parts 0: a0 a2, 1: a1 a3) and a re-run of it: a0 again, a1
    with new text (both replace their indexed rows), and b0, a copy of a2's text (dup of the indexed a2)."""
    old = _with_urls(_docs("a", 4))
    _, indexed = _signatures(tmp_path, "old", [old[0::2], old[1::2]])
    new = [old[0], {**old[1], "text": _docs("e", 1)[0]["text"]}, {**_docs("b", 1)[0], "text": old[2]["text"]}]
    sig_dir, sig = _signatures(tmp_path, "new", [new])
    return sig_dir, sig, _as_neighbours(indexed, str(tmp_path / "neighbours")), indexed


def _beam_assign(tmp_path, sig_dir: str, neighbours: list[str], retiring) -> dict:
    """Beam's assignments of the re-run (by id) and the replaced rows written ({file: nodes})."""
    from pipeline.dedup import beam_dedup
    from pipeline.dedup.passes import parquet_files
    from pipeline.engines.beam import BeamEngine

    stage = DedupStage(_config(tmp_path, "cfg", {}))
    assign_root = str(tmp_path / "assign")
    beam_dedup.assignments(BeamEngine(stage.cfg), parquet_files(sig_dir), assign_root, str(tmp_path / "work"), stage.params,
                           stage.section.threshold, stage.survivor_order, stage.section.max_rounds, neighbours,
                           retiring)
    sig = pq.read_table(sig_dir, columns=["part", "row", "id"]).to_pylist()
    ids = {(r["part"], r["row"]): r["id"] for r in sig}
    assigned = {}
    for f in storage.expand(assign_root):
        part = int(f.split("part=")[1].split("/")[0])
        for r in pq.read_table(f).to_pylist():
            assigned[ids[(part, r.pop("row"))]] = r
    replaced = {}
    if retiring is not None and storage.exists(retiring.root):
        for f in storage.expand(retiring.root):
            for r in pq.read_table(f).to_pylist():
                replaced.setdefault(r["file"], set()).add(r["node"])
    return {"assigned": assigned, "replaced": replaced}


def test_beam_writes_the_rows_a_rerun_replaces_only_for_the_parts_it_retires(tmp_path, rerun_inputs, monkeypatch):
    """Of the indexed rows the re-run replaces (a0's in part 0, a1's in part 1), only those of the parts
    it retires are written (the stage retires its own index's parts; a run appending elsewhere retires
    none and passes no `Retiring`). Beam reads the signatures and the neighbours once per pipeline that
    needs them (its graph, its members) and joins them by id once. Spark's twin is checked on small
    frames below (clustering these three documents took 12.8 s on a warm Spark session); both engines
    cluster a re-run end to end above."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline.dedup.index import Retiring, index_node

    sig_dir, sig, neighbours, indexed = rerun_inputs
    node = {r["id"]: index_node(0, r["node"]) for r in indexed.to_pylist()}
    opens = {}
    open_file = FileSystems.open

    def counted(path, *args, **kwargs):
        opens[path] = opens.get(path, 0) + 1
        return open_file(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(counted))
    out = _beam_assign(tmp_path, sig_dir, neighbours, Retiring(str(tmp_path / "replaced"), frozenset({0})))
    assert out["replaced"] == {0: {node["a0"]}}
    # a0 and a1 cluster with nothing (their indexed rows are out of the graph); b0 with the indexed a2
    assert {k: (v["reason"], v["cluster_id"]) for k, v in out["assigned"].items()} == {
        "b0": ("dup_exact_existing", "a2")}
    assert {(path.rsplit("/", 2)[-2], n) for path, n in opens.items() if path.endswith(".parquet")
            and "/work/" not in path} == {("signatures", 2), ("neighbours", 1)}, opens


def test_the_replaced_rows_are_marked_with_one_join(spark_session_engine):
    """Spark marks each indexed neighbour replaced or not in one outer join with the run's signatures,
    which the graph and the retiring share; an id repeated in the run never repeats a row of the graph.
    The retiring takes the replaced rows of the parts it retires only (part 0 here, not a2's part 1)."""
    from pipeline.dedup.index import Retiring
    from pipeline.dedup.spark_dedup import retired_rows, with_replaced

    spark = spark_session_engine.spark
    sig = spark.createDataFrame([("a0", 1, 10), ("a0", 1, 10), ("a1", 2, 11), ("a2", None, 12)],
                                "id string, url_key long, text_key long")
    neighbours = spark.createDataFrame(
        [(-1, "a0", 1, 99, 0), (-2, "a1", 3, 11, 0), (-3, "a2", 4, 12, 1), (-4, "a2", None, 13, 0),
         (-5, "x", 5, 14, 0)], "node long, id string, url_key long, text_key long, file int")
    marked = with_replaced(neighbours, sig)
    assert marked._jdf.queryExecution().optimizedPlan().toString().count("Join ") == 1
    rows = [(r["node"], r["replaced"]) for r in marked.collect()]
    # a0: same id and URL, twice in the run; a1: another URL; a2: no URL, so the text decides
    assert sorted(set(rows)) == [(-5, False), (-4, False), (-3, True), (-2, False), (-1, True)]
    assert sorted(n for n, replaced in rows if not replaced) == [-5, -4, -2]
    assert sorted(tuple(r) for r in retired_rows(marked, Retiring("unused", frozenset({0}))).collect()) == [
        (0, -1), (0, -1)]


# -- clean-up: the index keeps what its last two generations list

@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_commit_deletes_what_only_generations_before_the_previous_one_used(tmp_path, where, request, monkeypatch):
    """Generation N+1's commit deletes the manifests before N and the run files neither N nor N+1 lists
    that were written before N was committed: parts retired two commits ago, a killed run's files.
    What N lists stays for its readers, and so does anything written since N (a run in progress).
    Every file and manifest is timed by `clock`, an hour ahead (the local folders' own mtimes are
    older), not by the time it was written at: a filesystem or kernel clock timing to the second or
    the tick gives files written one after the other the same mtime, and the test sleeps for none.
    Locally os.utime sets it; on S3 the moto server in this process takes it as its time."""
    path = f"s3://{BUCKET}/index-{tmp_path.name}" if where == "s3" else str(tmp_path / "index")
    clock = [time.time() + 3600]
    if where == "s3":
        request.getfixturevalue("s3_endpoint")
        monkeypatch.setattr("moto.s3.models.utcnow", lambda: datetime.datetime.fromtimestamp(
            clock[0], datetime.timezone.utc).replace(tzinfo=None))
    index = DedupIndex(path)
    runs = storage.join(path, "runs")

    def stamp(uri: str) -> None:
        if where == "local":
            os.utime(uri, (clock[0], clock[0]))

    def put(*names: str) -> None:
        for name in names:
            storage.write_text(storage.join(runs, name), "parquet")
            stamp(storage.join(runs, name))

    def commit(*args) -> dict:
        manifest = index.commit(*args)
        stamp(index.manifest_path(manifest["generation"]))
        return manifest

    def files() -> list[str]:
        return sorted(f.removeprefix(runs + "/") for f in storage.expand(runs))

    put("r9/docs/part-00000.parquet")  # a run killed before generation 1
    put("r0/docs/part-00000.parquet", "r0/keys/part-00000.parquet")
    clock[0] += 10
    first = commit(index.generation(), {}, {"run": "r0"}, {})
    put("r1/docs/part-00000.parquet", "r0/rev-000002/docs/part-00000.parquet", "r0/rev-000002/keys/part-00000.parquet")
    put("r8/docs/part-00000.parquet")  # a run killed after generation 1, timed as it (the same second): it stays
    clock[0] += 10
    second = commit(first, {}, {"run": "r1"}, {"r0": {"parts": ["runs/r0/rev-000002/docs/part-00000.parquet"],
                                                     "retired": 1}})
    assert files() == ["r0/docs/part-00000.parquet", "r0/keys/part-00000.parquet",
                       "r0/rev-000002/docs/part-00000.parquet", "r0/rev-000002/keys/part-00000.parquet",
                       "r1/docs/part-00000.parquet", "r8/docs/part-00000.parquet"]
    put("r2/docs/part-00000.parquet")
    commit(second, {}, {"run": "r2"}, {"r0": {"parts": [], "retired": 2}})
    assert files() == ["r0/rev-000002/docs/part-00000.parquet", "r0/rev-000002/keys/part-00000.parquet",
                       "r1/docs/part-00000.parquet", "r2/docs/part-00000.parquet"]
    assert storage.listdir(runs) == ["r0", "r1", "r2"] and storage.listdir(storage.join(runs, "r0")) == ["rev-000002"]
    assert storage.listdir(index.manifest_dir) == ["gen-000002.json", "gen-000003.json"]
    assert [p.stored for p in index.parts(index.generation())] == [
        "runs/r1/docs/part-00000.parquet", "runs/r2/docs/part-00000.parquet"]
