"""The ingest stage on Spark and Beam: conservation on every input of ../shared/data/crawl, the
same documents from both engines, stable ids, config errors, and the demo corpus + demo.yaml."""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.stages import load_config
from pipeline.demo_corpus import generate
from pipeline.runner import run_stage
from pipeline.schema import doc_id
from pipeline.stage import StageStats
from pipeline.stages.ingest import IngestStage, id_root

from conftest import REPO, make_run_config
from test_ingest import crawl_files, decodable_bytes


def read_rows(stage_dir: str, sub: str) -> list[dict]:
    return [r for f in storage.expand(f"{stage_dir}/{sub}") if f.endswith(".parquet")
            for r in pq.read_table(f).to_pylist()]


def sources(shared: Path) -> list[dict]:
    return [
        {"name": "cc-warc", "format": "warc", "paths": [str(shared / "crawl/warc")]},
        {"name": "cc-wet", "paths": [str(shared / "crawl/wet/*.gz")]},
        {"name": "broken", "paths": [str(shared / "crawl/broken/*")]},
        {"name": "dolma", "preset": "dolma", "paths": [str(shared / "jsonl/cc_en_head-*.jsonl.gz")]},
        {"name": "cwt", "preset": "ccnet", "lang": "zh", "paths": [str(shared / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl")]},
    ]


def test_every_crawl_input_balances_and_engines_agree(tmp_path, shared_data, engines):
    outputs = {}
    for name, engine in engines.items():
        started = time.time()
        cfg = make_run_config(tmp_path / name, {"ingest": {"sources": sources(shared_data)}}, engine=name)
        summary = run_stage(IngestStage(cfg), engine)
        StageStats.from_dict(summary).check_conservation(name)
        out = f"{cfg.run.workdir}/ingest"
        docs = read_rows(out, "data")
        assert len(docs) == summary["kept"]["docs"] == 265
        outputs[name] = (sorted(docs, key=lambda r: (r["source_file"], r["source_offset"])), summary)
        print(f"{name}: {time.time() - started:.1f} s")
    (spark_docs, spark_stats), (beam_docs, beam_stats) = outputs["spark"], outputs["beam"]
    assert spark_docs == beam_docs
    for key in ("in", "kept", "dropped", "errors"):
        assert spark_stats[key] == beam_stats[key]
    jsonl = [shared_data / "jsonl/cc_en_head-0091.jsonl.gz", shared_data / "jsonl/cc_en_head-0174.jsonl.gz"]
    expected_bytes = sum(decodable_bytes(p) for p in crawl_files(shared_data) + jsonl) + \
        (shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl").stat().st_size
    assert spark_stats["in"]["bytes"] == expected_bytes
    # ids are unique (file + offset); the record ids repeat across files (the broken WET fragments
    # are copies of one file) and are kept as they are: exact dedup removes the copies later.
    ids = [r["id"] for r in spark_docs]
    assert len(set(ids)) == len(ids)
    record_ids = [r["record_id"] for r in spark_docs if r["record_id"]]
    assert len(set(record_ids)) < len(record_ids)
    assert spark_stats["errors"]["length_mismatch"]["docs"] == 2  # a WET whose Content-Length counts characters
    by_source = {r["source"] for r in spark_docs}
    assert by_source == {"cc-warc", "cc-wet", "broken", "dolma", "cwt"}
    assert all(r["lang"] == "zh" and r["lang_score"] == 1.0 for r in spark_docs if r["source"] == "cwt")
    assert all(r["lang"] is None for r in spark_docs if r["source"] != "cwt")


def test_ids_are_stable_across_runs(tmp_path, shared_data, engines):
    src = [{"name": "wet", "paths": [str(shared_data / "crawl/wet")]},
           {"name": "cwt", "preset": "ccnet", "paths": [str(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl")]}]
    runs = []
    for i in range(2):
        cfg = make_run_config(tmp_path / str(i), {"ingest": {"sources": src}}, engine="beam")
        run_stage(IngestStage(cfg), engines["beam"])
        runs.append(sorted((r["id"], r["record_id"], r["source"], r["source_file"], r["source_offset"])
                           for r in read_rows(f"{cfg.run.workdir}/ingest", "data")))
    assert runs[0] == runs[1] and len(runs[0]) == 146
    roots = {s["name"]: id_root(s["paths"]) for s in src}
    assert roots == {"wet": f"{shared_data}/crawl/", "cwt": f"{shared_data}/jsonl/"}
    assert all(i == doc_id(f"{s}/{f.removeprefix(roots[s])}", o) and r.startswith(("urn:uuid:", "sha1:"))
               for i, r, s, f, o in runs[0])


@pytest.mark.parametrize("patterns, root", [
    (["/data/cc/a.warc.gz"], "/data/cc/"),
    (["/data/cc"], "/data/"),
    (["/data/cc/"], "/data/cc/"),
    (["/data/cc/*/part-*.gz"], "/data/cc/"),
    (["/data/cc/2024-1?/*.gz", "/data/cc/2024-2[0-9]/*.gz"], "/data/cc/"),
    (["/data/a/*.jsonl", "/data/ab/*.jsonl"], "/data/"),
    (["gs://bucket/cc/*.warc.gz", "gs://bucket/cc/extra.warc.gz"], "gs://bucket/cc/"),
    (["gs://bucket/cc/*.gz", "/local/cc/*.gz"], ""),
    (["/data/configs/../cc/*.gz", "/data/cc/x/../extra.gz"], "/data/cc/"),  # as storage.expand lists them
])
def test_id_root_is_the_folder_every_match_sits_below(patterns, root):
    assert id_root(patterns) == root


def test_ids_do_not_depend_on_where_the_input_sits(tmp_path, shared_data, engines):
    """The same files in two places (a second clone, a copy to another disk) give the same ids; two
    sources over one file give distinct ones; files of the same name in two folders of one source too."""
    wet = sorted((shared_data / "crawl/wet").glob("*.gz"))[0]
    for place in ("here", "there/deeper"):
        for folder in ("a", "b"):
            (tmp_path / place / "crawl" / folder).mkdir(parents=True)
            (tmp_path / place / "crawl" / folder / wet.name).write_bytes(wet.read_bytes())
    ids = {}
    for place in ("here", "there/deeper"):
        # the way a config's relative paths arrive (configs/../work/...), which storage.expand normalises
        src = [{"name": "both", "paths": [f"{tmp_path / place}/x/../crawl/a/*.gz", str(tmp_path / place / "crawl/b")]},
               {"name": "again", "paths": [f"{tmp_path / place}/x/../crawl/a/{wet.name}"]},
               {"name": "alone", "paths": [f"{tmp_path / place}/x/../crawl/b/*.gz"]}]
        cfg = make_run_config(tmp_path / "run" / place, {"ingest": {"sources": src}}, engine="beam")
        run_stage(IngestStage(cfg), engines["beam"])
        rows = read_rows(f"{cfg.run.workdir}/ingest", "data")
        ids[place] = sorted((r["id"], r["source"], r["source_file"].rsplit("/", 2)[-2], r["source_offset"]) for r in rows)
    assert ids["here"] == ids["there/deeper"]
    per_copy = {}
    for i, source, folder, offset in ids["here"]:
        per_copy.setdefault((source, folder), set()).add(i)
    assert sorted(per_copy) == [("again", "a"), ("alone", "b"), ("both", "a"), ("both", "b")]
    assert len({i for i, *_ in ids["here"]}) == len(ids["here"]) == 4 * len(per_copy[("again", "a")]) > 0


def test_no_existing_input_at_all_is_a_config_error(tmp_path):
    cfg = make_run_config(tmp_path, {"ingest": {"sources": [{"name": "x", "paths": [str(tmp_path / "nothing-*.warc.gz")]}]}})
    with pytest.raises(ConfigError, match=r"ingest.sources: expected at least one existing input file"):
        IngestStage(cfg).units(None)


@pytest.mark.parametrize("section,message", [
    ({"sources": [{"name": "x", "paths": ["a"], "formt": "warc"}]}, r"ingest.sources\[0\].formt: unknown key"),
    ({"sources": [{"name": "x", "paths": ["a"], "format": "html"}]}, r"ingest.sources\[0\].format: expected one of"),
    ({"sources": [{"name": "x", "paths": "a.warc"}]}, r"ingest.sources\[0\].paths: expected list of path"),
    ({"sources": [{"name": "x", "paths": ["a"], "preset": "pile"}]}, r"ingest.sources\[0\].preset"),
    ({"sources": [{"name": "x", "paths": ["a"]}, {"name": "x", "paths": ["b"]}]}, r"ingest: sources: expected unique names"),
])
def test_config_errors_name_the_key(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        make_run_config(tmp_path, {"ingest": section})


def test_demo_corpus_and_demo_config(tmp_path, engines):
    """The generator is deterministic, and configs/demo.yaml ingests what it writes (where `make demo`
    puts it, work/demo-corpus; here the same files in tmp_path, the paths re-rooted after loading)."""
    corpus = tmp_path / "demo-corpus"
    paths = generate(corpus)
    again = generate(tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    assert 300_000 < sum(p.stat().st_size for p in paths) < 2_000_000
    cfg = load_config(REPO / "configs/demo.yaml", {"run.engine": "beam", "run.workdir": str(tmp_path / "out")})
    expected_root = str(REPO / "work/demo-corpus")
    for src in cfg.section("ingest").sources:
        assert all(str(Path(p).resolve().parent.parent) == expected_root for p in src.paths), src.paths
        src.paths = [str(corpus / Path(p).parent.name / Path(p).name) for p in src.paths]
    summary = run_stage(IngestStage(cfg), engines["beam"])
    assert summary["kept"]["docs"] > 350
    assert {"truncated_gzip", "invalid_json", "invalid_utf8"} <= set(summary["errors"])
    assert summary["dropped"]["empty_text"]["docs"] >= 2
    assert {"warc_request", "http_3xx", "non_html_image", "revisit", "warcinfo"} <= set(summary["dropped"])
    texts = [r["text"] for r in read_rows(f"{cfg.run.workdir}/ingest", "data")]
    assert any("熱湯" in t for t in texts)  # a Traditional copy, served as Big5
    assert not any("\ufffd" in t or "cookies" in t or "All rights reserved" in t for t in texts)
