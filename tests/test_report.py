"""The run report from what stages recorded: figures equal to the stage outputs, the same whatever the
partitioning, no engine started; the page's sections, escaping and hidden samples; the comparison
of two runs (moved documents found on Spark and on Beam alike); old workdirs recomputed on their
engine. The page itself is checked in headless Chromium by test_report_browser.py."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli import main as glmdata
from pipeline.report import collect, document_histograms, write_report
from pipeline.report_compare import compare_runs, moved_documents
from pipeline.report_html import render_compare_page
from report_fixtures import NASTY, count_stats_reads, make_run, rows_of


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    wd = make_run(tmp_path_factory.mktemp("a") / "work", min_words=10)
    write_report(str(wd))
    return wd


def _counts(rows: list[dict], key: str) -> Counter:
    return Counter(r.get(key) or "?" for r in rows)


def test_figures_equal_the_stage_outputs(run_a):
    data = json.loads((run_a / "report" / "report.json").read_text())
    for stage in ("ingest", "langid", "quality", "dedup", "mix"):
        kept = rows_of(run_a / stage / "data")
        for by, key in (("sources", "source"), ("languages", "lang")):
            assert {name: e["stages"][stage][0] for name, e in data[by].items() if stage in e["stages"]} == \
                _counts(kept, key), (stage, by)
        text_bytes = Counter()
        for r in kept:
            text_bytes[r["source"]] += len(r["text"].encode())
        assert {n: e["stages"][stage][1] for n, e in data["sources"].items() if stage in e["stages"]} == text_bytes
        rejected = rows_of(run_a / stage / "rejected")
        by_reason = Counter((f"{stage}: {r['reject_reason']}", r["source"]) for r in rejected)
        assert {(k, n): v[0] for n, e in data["sources"].items() for k, v in e["dropped"].items()
                if k.startswith(stage + ":")} == by_reason
    assert data["sources"]["forum-zh"]["shard_tokens"] == 45000
    assert data["sources"]["forum-zh"]["mix_epochs"] == 2.0  # every zh document twice
    assert data["sources"]["news-en"]["mix_epochs"] == 1.0
    assert data["lengths"]["quality"]["zh"] and sum(data["dedup_clusters"].values()) == len(rows_of(run_a / "dedup" / "data"))
    assert data["quality_signals"]["q_score"]["en"]["0"] > 0


def test_same_report_whatever_the_partitioning(tmp_path, run_a):
    """Samples are the smallest seeded keys, histograms and counts add: 5 units give 2 units' report."""
    other = make_run(tmp_path / "work", min_words=10, parts=5)
    a, b = collect(str(run_a)), collect(str(other))
    for key in ("sources", "languages", "breakdown", "lengths", "dedup_clusters", "quality_signals", "samples",
                "duplicate_examples"):
        assert a[key] == b[key], key
    kept = a["samples"]["quality"]["kept"]
    assert set(kept) == {"en", "zh"} and all(len(v) == 3 for v in kept.values())


def test_report_starts_no_engine(run_a, monkeypatch, capsys):
    import pipeline.engines

    def refuse(*args, **kwargs):
        raise AssertionError("the report of a run with profiles must not start an engine")

    monkeypatch.setattr(pipeline.engines, "make_engine", refuse)
    assert glmdata(["report", str(run_a)]) == 0
    out = capsys.readouterr().out
    assert "HTML report" in out and "per source" in out and "news-en" in out


def test_page_sections_escaping_and_units(run_a):
    html = (run_a / "report" / "report.html").read_text()
    assert "<script" not in html.lower() and "&lt;script&gt;" in html and NASTY not in html
    assert "<details open" not in html
    assert 'http-equiv="Content-Security-Policy"' in html
    for section in ("Funnel", "By language", "Drops per reason", "Sources", "Languages", "Document lengths",
                    "Quality signals", "Duplicates", "Cluster examples", "similarity", "target vs achieved",
                    "Shards", "sequence fill", "loss share", "[MASK] span lengths", "[gMASK] generated share",
                    "Tokens per source", "Manifest", "Samples of kept and rejected documents", "may be adult or spam",
                    "pii_replacements", "news-en", "forum-zh", "mixed-crawl", "../tokenizer/tokenizer.model"):
        assert section in html, section
    # Every table scrolls inside its container; every chart names the unit of its axes.
    assert html.count("<table") == html.count("<div class=scroll><table")
    assert 'class="axis-label"' in html
    for chart in ("shard-span-lengths", "shard-gmask-ratio", "dedup-clusters"):
        svg = re.search(f'<svg data-chart="{chart}".*?</svg>', html).group(0)
        assert svg.count('class="axis-label"') == 2, chart


def test_old_workdir_is_recomputed_on_its_engine(tmp_path, engines, monkeypatch):
    """stats.json without profiles (written before they existed): histograms on the run's engine."""
    wd = make_run(tmp_path / "work", engine="beam")
    for stats_path in wd.glob("*/stats.json"):
        stats = json.loads(stats_path.read_text())
        stats.pop("profile", None)
        stats_path.write_text(json.dumps(stats))
    import pipeline.engines

    started = []
    monkeypatch.setattr(pipeline.engines, "make_engine", lambda cfg, name=None: started.append(cfg.run.engine)
                        or engines["beam"])
    assert glmdata(["report", str(wd)]) == 0
    assert started == ["beam"]
    data = json.loads((wd / "report" / "report.json").read_text())
    assert data["recomputed_on"] == "beam" and data["legacy_stages"] == ["langid", "quality", "dedup", "mix"]
    assert sum(sum(c.values()) for c in data["lengths"]["langid"].values()) == len(rows_of(wd / "langid" / "data"))
    assert data["samples"]["quality"]["zh_spam_blocklist"]  # first rows of rejected/


def test_histograms_same_on_beam(run_a, engines):
    stages = ["quality", "dedup"]  # the signals and the clusters; two engine tasks each
    on_beam = document_histograms(str(run_a), stages, engines["beam"])
    assert on_beam == document_histograms(str(run_a), stages, engines["spark"])
    recorded = collect(str(run_a))
    assert on_beam == ({s: recorded["lengths"][s] for s in stages}, recorded["dedup_clusters"],
                       recorded["quality_signals"])  # recomputed = recorded


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:
    """run_a with the quality threshold raised: more documents rejected by min_words."""
    return make_run(tmp_path_factory.mktemp("b") / "work", min_words=30)


def test_moved_documents_on_both_engines(run_a, run_b, engines):
    found = {name: moved_documents(str(run_a), str(run_b), ["quality"], engine) for name, engine in engines.items()}
    assert found["spark"] == found["beam"]
    quality_a = {r["id"] for r in rows_of(run_a / "quality" / "data")}
    quality_b = {r["id"] for r in rows_of(run_b / "quality" / "data")}
    moved = {(t["a"], t["b"]): t for t in found["spark"]["quality"]}
    assert sum(t["documents"] for t in moved.values()) == len(quality_a - quality_b) > 0
    en = moved[("kept", "en_min_words")]
    assert {s["id"] for s in en["samples"]} <= quality_a - quality_b and len(en["samples"]) == min(5, en["documents"])
    sample = en["samples"][0]
    assert sample["a"]["text"] and sample["b"]["reject_detail"].startswith("words=")


def test_compare_command(run_a, run_b, capsys, monkeypatch):
    reads = count_stats_reads(monkeypatch)
    assert glmdata(["report", str(run_a), "--compare", str(run_b), "--engine", "beam"]) == 0
    assert set(reads.values()) == {1} and len(reads) == 2 * len(list(run_a.glob("*/stats.json")))  # each read once
    assert "documents changed status" in capsys.readouterr().out
    data = json.loads((run_a / "report" / "compare.json").read_text())
    quality = next(s for s in data["stages"] if s["stage"] == "quality")
    assert quality["reasons"]["en_min_words"]["b"] > quality["reasons"]["en_min_words"]["a"]
    html = (run_a / "report" / "compare.html").read_text()
    moved_ids = {s["id"] for t in data["moved"]["quality"] for s in t["samples"]}
    assert moved_ids and all(f"data-id='{i}'" in html for i in moved_ids)
    assert "Per source" in html and "news-en" in html and "<script" not in html.lower()
    assert {(t["a"], t["b"]) for t in data["moved"]["dedup"]} == {("kept", "absent")}  # dropped upstream in B


def test_compare_of_runs_with_different_stages(tmp_path):
    """A stage run in one of the two only keeps its place in the flow and says where it did not run."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", min_words=30)
    shutil.rmtree(a / "langid")
    shutil.rmtree(b / "mix")
    data = compare_runs(collect(str(a)), collect(str(b)))
    assert [s["stage"] for s in data["stages"]] == ["ingest", "langid", "quality", "dedup", "mix", "shards"]
    html = render_compare_page({**data, "moved": {}})
    assert "<b>langid</b> kept</td><td>not run</td><td>80</td>" in html
    assert "<b>mix</b> kept</td><td>102</td><td>not run</td>" in html
    # the stage's reasons and the per-source rows say so too, not 0 and a drop of everything
    assert not any(r["name"] == "langid" and r["a"] == [0, 0, 0] for e in data["sources"].values() for r in e["stages"])
    assert "kept after langid</td><td>not run</td>" in html and "kept after mix</td><td>" in html
    assert "kept after mix</td><td>0</td>" not in html and "kept after mix</td><td>-" not in html
