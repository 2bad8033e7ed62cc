"""The dedup stage on Spark and Beam: clusters, survivors, reasons, output contract, parity, stars."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
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


STAR = 600  # copies of one page in the star-shaped cluster (bench/dedup.py star runs 100,000)


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
    # a star: exact and near copies (one random word appended) of one page; no score: the longest
    # copy wins, then the smallest id
    rng = random.Random(1)
    star = en[5][:1500]
    for i in range(STAR):
        text = star if i % 2 else f"{star} {''.join(rng.choice('abcdefghij') for _ in range(8))}"
        docs.append({"id": f"star{i:04d}", "text": text, "q_score": None})
    random.Random(0).shuffle(docs)
    return [docs[0::3], docs[1::3], [], docs[2::3]], expect  # an empty part too


def run_dedup(tmp_path, engine, parts, section=None):
    cfg = make_run_config(tmp_path, {"dedup": section or {}}, engine=engine.name)
    write_finished_upstream(cfg.run.workdir, parts)
    summary = run_stage(DedupStage(cfg), engine)
    return summary, read_dedup_output(storage.join(cfg.run.workdir, "dedup"))


def test_clusters_survivors_stars_and_contract_on_both_engines(tmp_path, engines, corpus):
    parts, expect = corpus
    outputs = {}
    for name, engine in engines.items():
        summary, out = run_dedup(tmp_path / name, engine, parts)
        StageStats.from_dict(summary).check_conservation(name)
        n_docs = sum(len(p) for p in parts)
        assert summary["in"]["docs"] == n_docs and len(out["kept"]) + len(out["rejected"]) == n_docs
        assert {k: v for k, v in out["rejected"].items() if not k.startswith("star")} == expect, name
        for doc_id, (reason, survivor) in expect.items():
            cluster_id, size = out["kept"][survivor]
            assert cluster_id == survivor and size >= 2
        assert out["kept"]["short0"] == ("short0", 1) and out["kept"]["short3"] == ("short3", 1)
        # the star: one survivor (the first of the longest, near copies), every copy pointing at it
        stars = sorted(k for k in out["kept"] if k.startswith("star"))
        assert stars == ["star0000"] and out["kept"]["star0000"] == ("star0000", STAR)
        star_rejects = {k: v for k, v in out["rejected"].items() if k.startswith("star")}
        assert len(star_rejects) == STAR - 1 and {s for _, s in star_rejects.values()} == {"star0000"}
        assert {r for r, _ in star_rejects.values()} == {"dup_near"}  # all differ from star0000's text
        # a bucket links to its smallest member only: edges stay linear in the cluster size
        assert summary["extra"]["candidate_edges"] < 3 * STAR
        outputs[name] = out
    assert outputs["spark"] == outputs["beam"]


def test_unreadable_rows_go_to_errors_and_the_rest_goes_on(tmp_path, monkeypatch):
    """The map passes on their own (no engine): a row that raises is isolated with file + offset."""
    from pipeline.dedup import passes

    real_text_key = passes.text_key

    def fragile(text):
        if text and "BOOM" in text:
            raise ValueError("cannot normalize this")
        return real_text_key(text)

    monkeypatch.setattr(passes, "text_key", fragile)
    docs = [{"id": f"d{i}", "text": f"document number {i} " * 5 + ("BOOM" if i == 3 else "")} for i in range(6)]
    write_finished_upstream(str(tmp_path), [docs])
    cfg = make_run_config(tmp_path / "cfg", {"dedup": {}})
    params = DedupStage(cfg).params
    part = str(tmp_path / DedupStage.upstream / "data" / "part-00000.parquet")
    signed = passes.SignatureTask(params, str(tmp_path / "sig"))((0, part))
    stats = passes.AssignmentTask("dedup", str(tmp_path / "out"), {0: signed["signatures"]}, str(tmp_path / "assign"))((0, part))
    StageStats.from_dict(stats).check_conservation("dedup")
    assert stats["errors"]["dedup_exception"]["docs"] == 1 and stats["kept"]["docs"] == 5
    error = pq.read_table(tmp_path / "out" / "errors" / "part-00000.parquet").to_pylist()[0]
    assert (error["doc_id"], error["source_file"], error["source_offset"]) == ("d3", "f0", 3)
    assert "cannot normalize this" in error["message"]


def test_the_signature_pass_reads_only_the_columns_it_uses(tmp_path, monkeypatch):
    """The signals of the stages before (~60 columns in a whole-pipeline part) are not read for the
    signatures, and the signatures are the same as from the part without them."""
    from pipeline.dedup import passes

    seen = []
    real_signature_rows = passes.signature_rows

    def recording(batch, *args):
        seen.append(set(batch.schema.names))
        return real_signature_rows(batch, *args)

    monkeypatch.setattr(passes, "signature_rows", recording)
    docs = [{"id": f"d{i}", "text": f"document number {i} " * 20, "url": f"https://example.org/{i}",
             "q_score": 0.1 * i} for i in range(5)]
    params = DedupStage(make_run_config(tmp_path / "cfg", {"dedup": {}})).params
    signatures = []
    for name, extra in (("plain", []), ("signals", [("q_n_words", "int64"), ("lang_shares", "string")])):
        write_finished_upstream(str(tmp_path / name), [[dict(d, q_n_words=7, lang_shares="en:1") for d in docs]],
                                schema_extra=extra)
        part = str(tmp_path / name / "pii" / "data" / "part-00000.parquet")
        passes.SignatureTask(params, str(tmp_path / name / "sig"))((0, part))
        signatures.append(pq.read_table(tmp_path / name / "sig" / "part-00000.parquet"))
    assert signatures[0].equals(signatures[1])
    assert seen[1] == seen[0] == set(passes.SIGNATURE_INPUTS) & set(pq.read_schema(part).names)
    assert {"source_file", "source_offset", "q_n_words", "lang_shares"}.isdisjoint(seen[1])


@pytest.mark.parametrize("section,message", [
    ({"threshold": 1.5}, "dedup: threshold: expected a number between 0 and 1"),
    ({"survivor_order": ["q_score", "freshness"]}, "dedup: survivor_order: expected keys among"),
    ({"bands": 20, "rows": 8}, "bands x rows = 20 x 8 needs more than num_perm = 128"),
])
def test_bad_config_names_the_key(tmp_path, section, message):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        DedupStage(make_run_config(tmp_path, {"dedup": section}))


def test_empty_input(tmp_path):
    from pipeline.engines.beam import BeamEngine

    cfg = make_run_config(tmp_path, {"dedup": {}}, engine="beam")
    summary, out = run_dedup(tmp_path, BeamEngine(cfg), [[]])
    StageStats.from_dict(summary).check_conservation("dedup")
    assert summary["in"]["docs"] == 0 and out == {"kept": {}, "rejected": {}}


def test_the_cleaner_copy_survives_padded_and_mangled_copies_lose(tmp_path, shared_data):
    """issue 14: padded and mangled copies lose to the original even with a higher raw q_score in
    the same step, an earlier crawl and a smaller id; only a higher q_score step beats the rule."""
    from pipeline.engines.beam import BeamEngine

    en = _texts(shared_data, "en-speeches-sotu.jsonl", 1, min_len=3000)[0]
    zh = _texts(shared_data, "zh-news-thucnews.jsonl", 1, min_len=600)[0]
    padding = ("Home | News | Sports | Weather\nShare this article\n", "\nRelated stories\nSign up for our newsletter\n"
               "Home | News | Sports | Weather")
    words = en.split(" ")
    en_wrapped = "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12))  # hard-wrapped
    late, early = "2024-05-01T00:00:00Z", "2019-01-01T00:00:00Z"
    docs = [
        {"id": "z-en-original", "text": en, "q_score": 0.62, "crawl_date": late},
        {"id": "a-en-padded", "text": padding[0] + en + padding[1], "q_score": 0.64, "crawl_date": early},
        {"id": "b-en-mangled", "text": en_wrapped.replace(" ", "  ", 40), "q_score": 0.64, "crawl_date": early},
        {"id": "z-zh-original", "text": zh, "lang": "zh", "q_score": 0.61, "crawl_date": late},
        {"id": "a-zh-ascii-commas", "text": zh.replace("，", ", "), "lang": "zh", "q_score": 0.64, "crawl_date": early},
        {"id": "b-zh-spaced", "text": zh.replace("。", "。 \n "), "lang": "zh", "q_score": 0.64, "crawl_date": early},
        {"id": "c-zh-padded", "text": "首页 | 新闻 | 体育\n" + zh + "\n相关阅读\n首页 | 新闻 | 体育", "lang": "zh",
         "q_score": 0.63, "crawl_date": early},
    ]
    cfg = make_run_config(tmp_path, {"dedup": {}}, engine="beam")
    _, out = run_dedup(tmp_path, BeamEngine(cfg), [docs[:4], docs[4:]])
    assert set(out["kept"]) == {"z-en-original", "z-zh-original"}
    assert {k: s for k, (_, s) in out["rejected"].items()} == {
        "a-en-padded": "z-en-original", "b-en-mangled": "z-en-original",
        "a-zh-ascii-commas": "z-zh-original", "b-zh-spaced": "z-zh-original", "c-zh-padded": "z-zh-original"}
    # a clearly better score (the next step up) still comes first
    docs[1]["q_score"] = 0.70
    _, out = run_dedup(tmp_path / "step", BeamEngine(cfg), [docs[:4], docs[4:]])
    assert "a-en-padded" in out["kept"] and out["rejected"]["z-en-original"] == ("dup_near", "a-en-padded")


def test_copies_cut_differently_by_quality_still_match(tmp_path, shared_data):
    """issue 14: C4's line rule cuts two wrappings of one speech into different texts; dedup hashes
    the text quality received (q_text_before_rewrite) and finds them."""
    from pipeline.engines.beam import BeamEngine
    from pipeline.stages.quality import QualityStage

    import pyarrow as pa

    en = _texts(shared_data, "en-speeches-sotu.jsonl", 1, min_len=3000)[0]
    words = " ".join(en.split()).split(" ")
    wrapped = ["\n".join(" ".join(words[i:i + width]) for i in range(0, len(words), width)) for width in (9, 13)]
    rows = [{"id": f"w{k}", "text": t, "url": None, "lang": "en"} for k, t in enumerate(wrapped)]
    qcfg = make_run_config(tmp_path / "q", {"quality": {"en": {"c4": {"filter_no_terminal_punct": True}}}})
    result = QualityStage(qcfg).process_batch(pa.RecordBatch.from_pylist(rows))
    cleaned = result.rows.to_pylist()
    assert result.reasons == [None, None]
    assert cleaned[0]["text"] != cleaned[1]["text"] and cleaned[0]["q_text_before_rewrite"] == wrapped[0]
    cfg = make_run_config(tmp_path, {"dedup": {}}, engine="beam")
    docs = [{k: r[k] for k in ("id", "text", "q_text_before_rewrite")} | {"q_score": 0.5} for r in cleaned]
    write_finished_upstream(cfg.run.workdir, [docs], schema_extra=[("q_text_before_rewrite", "string")])
    run_stage(DedupStage(cfg), BeamEngine(cfg))
    out = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
    # same words, only the line breaks differ; the copy with fewer hard wraps (less noise) survives
    assert out["rejected"] == {"w0": ("dup_exact", "w1")}
    kept = pq.read_table(storage.join(cfg.run.workdir, "dedup", "data")).to_pylist()
    assert kept[0]["text"] == cleaned[1]["text"] and "q_text_before_rewrite" not in kept[0]


def test_crawl_dates_spelled_differently_order_by_time():
    """survivor_order's crawl_date compares date_key strings: the spellings ingest passes through from
    WARC, ARC and JSON dumps must order by time, unreadable ones last."""
    from pipeline.dedup.passes import UNKNOWN_DATE, date_key

    spelled = ["2019-01-15T07:00:00Z", "20190115080000", "Tue, 15 Jan 2019 09:00:00 GMT", "2019-01-15 10:00:00",
               "2019-01-15T19:00:00+08:00", "1547550000", "1547553600000", "1547557200.5", "2019/1/15 13:00",
               "2019-01-16", "not a date", None]
    assert sorted(spelled, key=date_key) == spelled
    assert [date_key(d) for d in spelled[-2:]] == [UNKNOWN_DATE] * 2
    assert date_key("2019-01-15 23:00:00") > date_key("2019-01-15T07:00:00Z")  # raw strings: ' ' < 'T'
