"""The dedup stage on Spark and Beam: clusters, survivors, reasons, output contract, parity, stars."""
from __future__ import annotations

import json
import random

import pytest

from filters.normalize import to_traditional
from pipeline import storage
from pipeline.dedup.fixtures import read_dedup_output, write_finished_upstream
from pipeline.runner import run_stage
from pipeline.stage import StageStats
from pipeline.stages.dedup import DedupStage

from conftest import make_run_config


def _texts(shared_data, name: str, n: int, min_len: int = 400) -> list[str]:
    rows = [json.loads(line) for line in open(shared_data / "text" / name, encoding="utf-8")]
    return [r["text"] for r in rows if len(r["text"]) >= min_len][:n]


def _delete_one_sentence(text: str, sep: str) -> str:
    sentences = text.split(sep)
    del sentences[len(sentences) // 2]
    return sep.join(sentences)


@pytest.fixture(scope="module")
def corpus(shared_data):
    """Three parts of real prose with planted duplicates; `expect` maps id -> (reason, survivor)."""
    en = _texts(shared_data, "en-news-scrapinghub.jsonl", 20, min_len=3000)
    zh = _texts(shared_data, "zh-wiki-cmrc2018.jsonl", 20)
    docs = [{"id": f"en{i}", "text": t, "url": f"https://news.example/{i}", "q_score": 0.5} for i, t in enumerate(en)]
    docs += [{"id": f"zh{i}", "text": t, "lang": "zh", "url": f"https://zh.example/{i}", "q_score": 0.5}
             for i, t in enumerate(zh)]
    expect = {}
    # exact copy with more whitespace and a higher quality score: the copy survives
    docs.append({"id": "en0-copy", "text": "  " + en[0].replace(" ", "  ") + "\n", "q_score": 0.9})
    expect["en0"] = ("dup_exact", "en0-copy")
    # same URL, different text
    docs.append({"id": "en1-url", "text": "Page moved. " * 3, "url": "https://news.example/1#top", "q_score": 0.1})
    expect["en1-url"] = ("dup_url", "en1")
    # near copies: one sentence deleted (English); Traditional script (Chinese), equal scores: longer wins
    docs.append({"id": "en2-near", "text": _delete_one_sentence(en[2], ". "), "q_score": 0.5})
    expect["en2-near"] = ("dup_near", "en2")
    docs.append({"id": "zh3-hant", "text": to_traditional(zh[3]), "lang": "zh", "q_score": 0.5})
    docs.append({"id": "zh3-punct", "text": zh[3].replace("，", ",").replace("。", "."), "lang": "zh", "q_score": 0.4})
    expect["zh3-punct"] = ("dup_near", "zh3" if len(zh[3]) >= len(to_traditional(zh[3])) else "zh3-hant")
    expect["zh3-hant" if expect["zh3-punct"][1] == "zh3" else "zh3"] = ("dup_near", expect["zh3-punct"][1])
    # short unrelated documents, and documents without any shingle: never clustered together
    docs += [{"id": f"short{i}", "text": w, "q_score": 0.5} for i, w in enumerate(["Hello world.", "Hello there.", "OK", "!!!", "?"])]
    random.Random(0).shuffle(docs)
    return [docs[0::3], docs[1::3], docs[2::3]], expect


def run_dedup(tmp_path, engine, parts, section=None):
    cfg = make_run_config(tmp_path, {"dedup": section or {}}, engine=engine.name)
    write_finished_upstream(cfg.run.workdir, parts)
    summary = run_stage(DedupStage(cfg), engine)
    return summary, read_dedup_output(storage.join(cfg.run.workdir, "dedup"))


def test_clusters_survivors_and_contract_on_both_engines(tmp_path, engines, corpus):
    parts, expect = corpus
    outputs = {}
    for name, engine in engines.items():
        summary, out = run_dedup(tmp_path / name, engine, parts)
        StageStats.from_dict(summary).check_conservation(name)
        n_docs = sum(len(p) for p in parts)
        assert summary["in"]["docs"] == n_docs and len(out["kept"]) + len(out["rejected"]) == n_docs
        assert out["rejected"] == expect, name
        for doc_id, (reason, survivor) in expect.items():
            cluster_id, size = out["kept"][survivor]
            assert cluster_id == survivor and size >= 2
        assert out["kept"]["short0"] == ("short0", 1) and out["kept"]["short3"] == ("short3", 1)
        outputs[name] = out
    assert outputs["spark"] == outputs["beam"]


def test_huge_cluster_is_a_star(tmp_path, engines, shared_data):
    """Thousands of exact and near copies of one page: one cluster, one survivor, no pair blow-up."""
    base = _texts(shared_data, "en-news-scrapinghub.jsonl", 1, min_len=2000)[0]
    rng = random.Random(1)
    word = lambda: "".join(rng.choice("abcdefghij") for _ in range(8))  # noqa: E731
    n = 1000
    docs = [{"id": f"c{i:05d}", "text": base if i % 2 else f"{base} {word()}", "q_score": 0.0} for i in range(n)]
    parts = [docs[i::4] for i in range(4)]
    for name, engine in engines.items():
        summary, out = run_dedup(tmp_path / name, engine, parts)
        assert len(out["kept"]) == 1, name
        (survivor, (cluster_id, size)), = out["kept"].items()
        assert size == n and cluster_id == survivor
        assert {s for _, s in out["rejected"].values()} == {survivor}
        # a bucket links to its smallest member only: edges stay linear in the cluster size
        assert summary["extra"]["candidate_edges"] < 2 * n
