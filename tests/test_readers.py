"""Document stages process only what the mix reads from them or a later stage (run.skip_not_in_mix):
the selection each stage gets from the mix's sources, and the demo pipeline run both ways, with
the same mix and every skipped document counted as `not_in_mix`."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import regex
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from conftest import REPO, make_run_config
from demo_runs import demo_config
from pipeline.demo_corpus import generate
from pipeline.run_all import run_pipeline
from pipeline.selection import NOT_READ, Selection
from pipeline.stages import load_config
from pipeline.stages.langid import LangidStage
from pipeline.stages.readers import read_after


def test_glm130b_recipe_sends_only_the_crawl_on_and_only_its_chinese_after_langid():
    cfg = load_config(REPO / "configs" / "glm130b.yaml")
    assert read_after(cfg, "langid") == Selection(((("cc-zh",), "zh"),), langs_decided=False)
    for stage in ("quality", "pii", "dedup", "decontaminate"):
        assert read_after(cfg, stage) == Selection(((("cc-zh",), "zh"),)), stage
    batch = pa.table({"source": ["pile", "cc-zh", "cc-zh", "cc-zh"], "lang": ["en", "en", "zh", None],
                      "text": ["a", "b", "c", "d"]})
    assert read_after(cfg, "langid").mask(batch).tolist() == [False, True, True, True]
    assert read_after(cfg, "quality").mask(batch).tolist() == [False, False, True, True]  # unset: langid decides later
    pages = pa.table({"source": ["cc-zh", "cc-zh", "cc-zh", "cc-zh", "pile"],
                      "text": ["An English page.", "中文网页", "カタカナのページ", "Bonjour 한국", "中文"]})
    assert LangidStage(cfg).selected(pages).tolist() == [False, True, True, True, False]


def test_a_source_pattern_selects_every_part_of_a_dump():
    """"pile/*" selects the parts ingest's subset_field made of the Pile, `?` one character; the other
    characters are literal (the dot in "a.b*" too)."""
    selection = Selection(((("pile/*",), "en"), (("cc-??", "a.b*"), "zh")), langs_decided=False)
    sources = ["pile/PG-19", "pile/Pile-CC", "pile", "piles/x", "cc-zh", "cc-zhx", "a.bc", "axbc", None]
    batch = pa.table({"source": sources, "text": ["t"] * len(sources)})
    assert selection.mask(batch).tolist() == [True, True, False, False, True, False, True, False, False]
    assert [sorted(selection.langs_for(s)) for s in sources] == [
        ["en"], ["en"], [], [], ["zh"], [], ["zh"], [], []]


CJK_LETTER = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


def test_langid_never_names_a_cjk_language_for_text_without_cjk_letters(shared_data):
    """Why langid may skip such a page when its source is read only in Chinese: on 60 sentences of
    each of lingua's languages and on romanised Chinese, Japanese and Korean, the identification of
    a text without a CJK letter is never zh, ja or ko."""
    from filters.langid import LanguageIdentifier, only_cjk

    assert only_cjk({"zh"}) and only_cjk({"zh", "ja"}) and not only_cjk({"zh", "en"}) and not only_cjk(set())
    identifier = LanguageIdentifier()
    texts = ["ni hao, wo shi zhongguo ren, wo zhu zai beijing", "Zhōngguó rénmín yínháng fābù gōnggào",
             "watashi wa nihonjin desu, tokyo ni sunde imasu", "annyeonghaseyo, jeoneun hanguk saram ieyo"]
    for path in sorted((shared_data / "langid").glob("lingua-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for _, line in zip(range(60), f)]
    without = [t for t in texts if not CJK_LETTER.search(t)]
    assert len(without) > 1000
    assert [t for t in without if identifier.identify(t).lang in ("zh", "ja", "ko")] == []


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
        cfg = demo_config(corpus, workdir, **{"run.skip_not_in_mix": skip, "mix.sources": sources})
        run_pipeline(cfg, spark_session_engine, last="mix", report=False, console=Console(quiet=True))
        stats = {s: json.loads((workdir / s / "stats.json").read_text())
                 for s in ("ingest", "langid", "quality", "pii", "dedup", "decontaminate", "mix")}
        runs[skip] = (workdir, stats)
    (skipping, with_skip), (_, without) = runs[True], runs[False]
    assert _rows(skipping / "mix" / "data") == _rows(runs[False][0] / "mix" / "data")
    assert all(NOT_READ not in s["dropped"] for s in without.values())
    ingested = pq.read_table(skipping / "ingest" / "data").to_pylist()
    dump_docs = sum(1 for r in ingested if r["source"] == "demo-dolma")
    # read only in Chinese: pages without a CJK letter skip langid's prediction
    no_cjk = sum(1 for r in ingested if r["source"] in ("demo-web", "demo-ccnet") and not CJK_LETTER.search(r["text"]))
    assert dump_docs and no_cjk and with_skip["langid"]["dropped"][NOT_READ]["docs"] == dump_docs + no_cjk
    assert with_skip["langid"]["in"] == without["langid"]["in"]  # received, counted, not processed
    english_after_quality = [r for r in pq.read_table(skipping / "quality" / "data").to_pylist() if r["lang"] == "en"]
    assert english_after_quality and {r["source"] for r in english_after_quality} == {"demo-wet"}
    assert with_skip["pii"]["dropped"][NOT_READ]["docs"] == len(english_after_quality)
    for stage in ("dedup", "decontaminate"):  # the crawl's Chinese only from pii on
        assert NOT_READ not in with_skip[stage]["dropped"]
        assert with_skip[stage]["in"]["docs"] < without[stage]["in"]["docs"]
