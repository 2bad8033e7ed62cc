"""Document stages process only what the mix reads from them or a later stage (run.skip_not_in_mix):
the selection each stage gets from the mix's sources, and the demo pipeline run both ways, with
the same mix and every skipped document counted as `not_in_mix`."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from conftest import REPO, make_run_config
from demo_runs import DEMO, QUICK_JVM, demo_sources
from pipeline.demo_corpus import generate
from pipeline.run_all import run_pipeline
from pipeline.selection import NOT_READ, Selection
from pipeline.stages import load_config
from pipeline.stages.readers import read_after


def test_glm130b_recipe_sends_only_the_crawl_on_and_only_its_chinese_after_langid():
    cfg = load_config(REPO / "configs" / "glm130b.yaml")
    assert read_after(cfg, "langid") == Selection(((("cc-zh",), None),))
    for stage in ("quality", "pii", "dedup", "decontaminate"):
        assert read_after(cfg, stage) == Selection(((("cc-zh",), "zh"),)), stage
    batch = pa.table({"source": ["pile", "cc-zh", "cc-zh", "cc-zh"], "lang": ["en", "en", "zh", None],
                      "text": ["a", "b", "c", "d"]})
    assert read_after(cfg, "langid").mask(batch).tolist() == [False, True, True, True]
    assert read_after(cfg, "quality").mask(batch).tolist() == [False, False, True, True]  # unset: langid decides later


def test_switched_off_or_without_a_mix_every_document_is_processed(tmp_path):
    mix = {"target_tokens": 1000, "language_shares": {"en": 1.0},
           "sources": [{"name": "a", "lang": "en", "stage": "ingest"}]}
    cfg = make_run_config(tmp_path / "off", {"mix": mix}, skip_not_in_mix=False)
    assert read_after(cfg, "quality") is None
    cfg = make_run_config(tmp_path / "on", {"mix": mix})
    assert read_after(cfg, "quality") == Selection(())  # the mix reads nothing after ingest
    assert read_after(cfg, "quality").mask(pa.table({"source": ["a"], "lang": ["en"]})).tolist() == [False]


def _rows(folder: Path) -> Counter:
    return Counter(json.dumps(r, sort_keys=True, ensure_ascii=False, default=repr)
                   for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist())


@pytest.mark.slow
@pytest.mark.spark
def test_demo_pipeline_skips_what_the_mix_never_reads_and_mixes_the_same(tmp_path, spark_session_engine):
    """A curated dump taken from ingest, the crawl's Chinese after decontamination and the WET
    files' English after quality: with the skip, langid never reads the dump and the stages after
    quality never read the crawl's English, yet the mix takes the same rows."""
    corpus = tmp_path / "corpus"
    generate(corpus)
    crawl = ["demo-web", "demo-wet", "demo-ccnet"]
    sources = [{"name": "dump", "lang": "en", "stage": "ingest", "match_source": ["demo-dolma"]},
               {"name": "crawl_zh", "lang": "zh", "match_source": crawl},
               {"name": "wet_en", "lang": "en", "stage": "quality", "match_source": ["demo-wet"]}]
    runs = {}
    for skip in (True, False):
        workdir = tmp_path / f"skip-{skip}"
        cfg = load_config(DEMO, {"run.workdir": str(workdir), "ingest.sources": demo_sources(corpus),
                                 "run.spark.conf": QUICK_JVM, "run.skip_not_in_mix": skip, "mix.sources": sources})
        run_pipeline(cfg, spark_session_engine, last="mix", report=False, console=Console(quiet=True))
        stats = {s: json.loads((workdir / s / "stats.json").read_text())
                 for s in ("ingest", "langid", "quality", "pii", "dedup", "decontaminate", "mix")}
        runs[skip] = (workdir, stats)
    (skipping, with_skip), (_, without) = runs[True], runs[False]
    assert _rows(skipping / "mix" / "data") == _rows(runs[False][0] / "mix" / "data")
    assert all(NOT_READ not in s["dropped"] for s in without.values())
    dump_docs = sum(1 for r in pq.read_table(skipping / "ingest" / "data").to_pylist() if r["source"] == "demo-dolma")
    assert dump_docs and with_skip["langid"]["dropped"][NOT_READ]["docs"] == dump_docs
    assert with_skip["langid"]["in"] == without["langid"]["in"]  # received, counted, not processed
    english_after_quality = [r for r in pq.read_table(skipping / "quality" / "data").to_pylist() if r["lang"] == "en"]
    assert english_after_quality and {r["source"] for r in english_after_quality} == {"demo-wet"}
    assert with_skip["pii"]["dropped"][NOT_READ]["docs"] == len(english_after_quality)
    for stage in ("dedup", "decontaminate"):  # the crawl's Chinese only from pii on
        assert NOT_READ not in with_skip[stage]["dropped"]
        assert with_skip[stage]["in"]["docs"] < without[stage]["in"]["docs"]
