"""The langid stage on both engines: parity, output contract, mixed pages, normalization, config."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import make_run_config, write_finished_stage
from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import run_stage
from pipeline.stage import StageStats
from pipeline.stages.langid import SHARES_TYPE, LangidStage

MIXED_PAGE = ("The committee met on Monday to discuss the new budget for schools and hospitals in the region.\n"
              "委员会周一开会讨论该地区学校和医院的新预算。\n"
              "Members agreed that more money should go to teachers, nurses and the repair of old buildings.\n"
              "委員們同意應該把更多的錢用於教師、護士和舊建築的維修。")


def _docs(shared_data: Path) -> list[dict]:
    """A few real documents of every kind, plus a mixed page and edge cases."""
    texts = []
    for name, n in [("en-news-scrapinghub.jsonl", 6), ("zh-news-thucnews.jsonl", 4), ("zh-hant-wiki-drcd.jsonl", 4)]:
        with (shared_data / "text" / name).open(encoding="utf-8") as f:
            texts += [json.loads(next(f))["text"] for _ in range(n)]
    for lang, n in [("ja", 3), ("ko", 3), ("de", 3), ("ru", 2)]:
        with (shared_data / "langid" / f"lingua-{lang}.jsonl").open(encoding="utf-8") as f:
            texts += [json.loads(next(f))["text"] for _ in range(n)]
    texts += [MIXED_PAGE, "", "12345 ---", "ＡＢＣ　全角字母和数字１２３，以及繁體字的測試。\x00\r\n\r\n\r\n第二段。", None]
    return [{"id": f"doc-{i:03d}", "text": t, "url": f"http://example.com/{i}", "source": "test",
             "source_file": "f.jsonl", "source_offset": i} for i, t in enumerate(texts)]


def _fake_ingest(workdir: str, docs: list[dict], files: int = 2) -> None:
    write_finished_stage(workdir, "ingest", docs, files)


def _rows(stage_dir: str) -> dict[str, dict]:
    rows = {}
    for path in storage.expand(stage_dir):
        if path.endswith(".parquet") and "/errors/" not in path:
            for row in pq.read_table(path).to_pylist():
                rows[row["id"]] = row
    return rows


@pytest.fixture
def docs(shared_data):
    return _docs(shared_data)


def test_parity_spark_beam_and_contract(tmp_path, engines, docs):
    results = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / name, {"langid": {"mixed": "split"}}, engine=name)
        _fake_ingest(cfg.run.workdir, docs)
        summary = run_stage(LangidStage(cfg), engine)
        StageStats.from_dict(summary).check_conservation(name)
        results[name] = (summary, _rows(f"{cfg.run.workdir}/langid"))
    (spark_stats, spark_rows), (beam_stats, beam_rows) = results["spark"], results["beam"]
    assert spark_rows == beam_rows
    assert {k: spark_stats[k] for k in ("in", "kept", "dropped", "created")} == \
           {k: beam_stats[k] for k in ("in", "kept", "dropped", "created")}

    rows = spark_rows
    assert spark_stats["in"]["docs"] == len(docs)
    assert spark_stats["created"]["docs"] == 1  # the mixed page became two documents
    kept = {i: r for i, r in rows.items() if r.get("reject_reason") is None}
    assert {r["lang"] for r in kept.values()} == {"en", "zh"}
    assert rows["doc-014"]["reject_reason"] == "lang_other:ja" and rows["doc-017"]["reject_reason"] == "lang_other:ko"
    assert rows["doc-026"]["reject_reason"] == "lang_other:und"  # empty text
    assert rows["doc-029"]["reject_reason"] == "lang_other:und" and rows["doc-029"]["text"] is None
    # The mixed page: one English and one Chinese document, the Chinese part normalised to Simplified.
    en_part, zh_part = rows["doc-025#en"], rows["doc-025#zh"]
    assert en_part["lang_shares"] == [("en", 1.0)] and en_part["script"] == "Latn"
    assert zh_part["text"] == "委员会周一开会讨论该地区学校和医院的新预算。\n委员们同意应该把更多的钱用于教师、护士和旧建筑的维修。"
    # Traditional Wikipedia: kept as zh, converted, the original script recorded.
    hant = rows["doc-010"]
    assert (hant["lang"], hant["script"]) == ("zh", "Hant")
    assert hant["text"] != docs[10]["text"] and hant["text"].count("臺") == 0
    # Width folding and whitespace cleanup on Chinese; English text untouched.
    assert rows["doc-028"]["text"] == "ABC 全角字母和数字123，以及繁体字的测试。\n\n第二段。"
    assert rows["doc-000"]["text"] == docs[0]["text"] and rows["doc-000"]["script"] == "Latn"
    assert all(abs(sum(v for _, v in r["lang_shares"]) - 1) < 1e-5 for r in rows.values() if r["lang_shares"])

    # lang_shares is an Arrow map that Spark reads and writes back unchanged (later stages use it).
    data = f"{tmp_path}/spark/out/langid/data"
    assert pq.read_schema(storage.expand(data)[0]).field("lang_shares").type == SHARES_TYPE
    copy = str(tmp_path / "copy")
    engines["spark"].spark.read.parquet(data).write.parquet(copy)
    original = pq.read_table(data).sort_by("id").select(["id", "lang_shares"])
    assert pq.read_table(copy).sort_by("id").select(["id", "lang_shares"]).to_pylist() == original.to_pylist()


@pytest.mark.parametrize("mixed, reasons", [("keep", {}), ("drop", {"lang_mixed": 1})])
def test_mixed_keep_and_drop(tmp_path, mixed, reasons):
    from pipeline.engines.beam import BeamEngine

    docs = [{"id": "mixed", "text": MIXED_PAGE, "source": "t", "source_file": "f", "source_offset": 0}]
    cfg = make_run_config(tmp_path, {"langid": {"mixed": mixed}}, engine="beam")
    _fake_ingest(cfg.run.workdir, docs, files=1)
    summary = run_stage(LangidStage(cfg), BeamEngine(cfg))
    assert {k: v["docs"] for k, v in summary["dropped"].items()} == reasons
    assert summary["created"]["docs"] == 0
    row = _rows(f"{cfg.run.workdir}/langid")["mixed"]
    assert row["lang"] == "en" and row["text"] == MIXED_PAGE  # not Chinese: no normalization


@pytest.mark.parametrize("mixed", ["keep", "split"])
def test_chinese_page_with_a_japanese_paragraph_is_not_rejected(tmp_path, shared_data, mixed):
    """One Japanese paragraph no longer makes the Chinese paragraphs around it Japanese: the page
    is kept as zh with both shares, or split into a kept zh part and a rejected ja part."""
    from pipeline.engines.beam import BeamEngine

    from test_langid import _lingua

    chinese, japanese = "\n\n".join(_lingua(shared_data, "zh", 3)), _lingua(shared_data, "ja", 1)[0]
    docs = [{"id": "page", "text": f"{chinese}\n\n{japanese}", "source": "t", "source_file": "f", "source_offset": 0}]
    cfg = make_run_config(tmp_path, {"langid": {"mixed": mixed}}, engine="beam")
    _fake_ingest(cfg.run.workdir, docs, files=1)
    summary = run_stage(LangidStage(cfg), BeamEngine(cfg))
    rows = _rows(f"{cfg.run.workdir}/langid")
    if mixed == "keep":
        assert rows["page"]["lang"] == "zh" and rows["page"].get("reject_reason") is None
        assert {lang for lang, _ in rows["page"]["lang_shares"]} == {"ja", "zh"}
    else:
        assert summary["created"]["docs"] == 1
        assert rows["page#zh"].get("reject_reason") is None and rows["page#zh"]["lang_shares"] == [("zh", 1.0)]
        assert rows["page#zh"]["text"].strip() == chinese
        assert rows["page#ja"]["reject_reason"] == "lang_other:ja" and rows["page#ja"]["text"] == japanese

TRADITIONAL = ("臺北車站是臺灣最繁忙的交通樞紐，每天有數十萬旅客在這裡轉乘鐵路、捷運與公車。",
               "車站周邊的商業區發展迅速，許多百貨公司和餐廳吸引了大量來自各地的觀光客。")
SIMPLIFIED = ("台北车站是台湾最繁忙的交通枢纽，每天有数十万旅客在这里转乘铁路、捷运与公车。",
              "车站周边的商业区发展迅速，许多百货公司和餐厅吸引了大量来自各地的观光客。")
# Kanji and Hanja that OpenCC t2s would change (場 -> 场, 達 -> 达; 韓 -> 韩, 國 -> 国, 漢 -> 汉).
HAN_NOT_CHINESE = {"ja": "東京駅の広場で友達と待ち合わせました。この場所は週末になるととても賑やかです。",
                   "ko": "大韓民國의 首都는 서울이며, 漢字와 한글을 섞어 쓴 文章은 오늘날 新聞에서도 볼 수 있습니다."}


def _run_langid(tmp_path, section: dict, texts: dict[str, str]) -> tuple[dict, dict[str, dict]]:
    from pipeline.engines.beam import BeamEngine

    docs = [{"id": doc_id, "text": text, "source": "t", "source_file": "f", "source_offset": i}
            for i, (doc_id, text) in enumerate(texts.items())]
    cfg = make_run_config(tmp_path, {"langid": section}, engine="beam")
    _fake_ingest(cfg.run.workdir, docs, files=1)
    summary = run_stage(LangidStage(cfg), BeamEngine(cfg))
    return summary, _rows(f"{cfg.run.workdir}/langid")


@pytest.mark.parametrize("other", ["ja", "ko"])
@pytest.mark.parametrize("mixed", ["keep", "split"])
def test_t2s_leaves_the_japanese_or_korean_paragraph_of_a_chinese_page_as_written(tmp_path, mixed, other):
    """A Traditional Chinese article with one Japanese (Korean with Hanja) paragraph, kept as zh:
    its Chinese lines become Simplified, the other paragraph keeps its kanji (Hanja) byte for byte.
    Split, the zh part is converted and the rejected part is as written."""
    paragraph = HAN_NOT_CHINESE[other]
    summary, rows = _run_langid(tmp_path, {"mixed": mixed}, {"page": f"{TRADITIONAL[0]}\n\n{paragraph}\n\n{TRADITIONAL[1]}"})
    if mixed == "keep":
        page = rows["page"]
        assert (page["lang"], page["script"], page.get("reject_reason")) == ("zh", "Hant", None)
        assert {lang for lang, _ in page["lang_shares"]} == {"zh", other}
        assert page["text"] == f"{SIMPLIFIED[0]}\n\n{paragraph}\n\n{SIMPLIFIED[1]}"
    else:
        assert summary["created"]["docs"] == 1
        assert rows["page#zh"].get("reject_reason") is None
        assert rows["page#zh"]["text"] == f"{SIMPLIFIED[0]}\n\n{SIMPLIFIED[1]}"
        assert rows[f"page#{other}"]["reject_reason"] == f"lang_other:{other}"
        assert rows[f"page#{other}"]["text"] == f"{paragraph}\n"


def test_traditional_chinese_page_is_converted_whole(tmp_path):
    """Without kana or Hangul every line is Chinese: t2s, width folding and whitespace as before."""
    _, rows = _run_langid(tmp_path, {}, {"page": f"{TRADITIONAL[0]}\r\n\r\n\r\n　{TRADITIONAL[1]}ＡＢＣ"})
    assert rows["page"]["lang_shares"] == [("zh", 1.0)]
    assert rows["page"]["text"] == f"{SIMPLIFIED[0]}\n\n{SIMPLIFIED[1]}ABC"


CLASSICAL = "道可道，非常道。名可名，非常名。無名天地之始；有名萬物之母。故常無欲，以觀其妙；常有欲，以觀其徼。此兩者，同出而異名，同謂之玄。"


@pytest.mark.parametrize("drop_variants, reasons", [([], {}), (["wuu"], {"lang_variant:wuu": 1}),
                                                    (["wuu", "lzh"], {"lang_variant:wuu": 1, "lang_variant:lzh": 1})])
def test_variety_column_keep_and_drop(tmp_path, drop_variants, reasons):
    """Wu (lid.176's own class) and Classical Chinese (the function-word rule) are kept as zh with
    `lang_variant` by default, rejected when listed in drop_variants."""
    from pipeline.engines.beam import BeamEngine

    from test_langid import WU

    docs = [{"id": "wu", "text": WU, "source": "t", "source_file": "f", "source_offset": 0},
            {"id": "zh", "text": "今天天气很好，我们去公园散步吧。", "source": "t", "source_file": "f", "source_offset": 1},
            {"id": "lzh", "text": CLASSICAL, "source": "t", "source_file": "f", "source_offset": 2}]
    cfg = make_run_config(tmp_path, {"langid": {"drop_variants": drop_variants}}, engine="beam")
    _fake_ingest(cfg.run.workdir, docs, files=1)
    summary = run_stage(LangidStage(cfg), BeamEngine(cfg))
    assert {k: v["docs"] for k, v in summary["dropped"].items()} == reasons
    rows = _rows(f"{cfg.run.workdir}/langid")
    assert rows["wu"]["lang"] == "zh" and rows["wu"]["lang_variant"] == "wuu"
    assert rows["lzh"]["lang"] == "zh" and rows["lzh"]["lang_variant"] == "lzh"
    assert rows["zh"]["lang_variant"] is None
    for doc in ("wu", "lzh"):
        assert (rows[doc].get("reject_reason") is None) == (rows[doc]["lang_variant"] not in drop_variants)
    if "lzh" not in drop_variants:
        assert rows["lzh"]["text"].startswith("道可道，非常道。名可名，非常名。无名天地之始")  # kept Chinese: t2s


@pytest.mark.parametrize("section, message", [
    ({"min_share": 1.5}, "langid: min_share: expected a number between 0 and 1"),
    ({"mixed": "merge"}, "langid.mixed: expected one of 'keep', 'split', 'drop'"),
    ({"min_score": {"en": "high"}}, "langid.min_score.en: expected float"),
    ({"model": "no/such/model.ftz"}, "langid.model: expected an existing input path"),
    ({"chinese": {"t2s": "yes"}}, "langid.chinese.t2s: expected bool"),
    ({"cjk_katakana_share": 2}, "langid: cjk_katakana_share: expected a number between 0 and 1"),
    ({"predict_chars": 0}, "langid: predict_chars: expected a positive integer"),
])
def test_config_errors_name_the_key(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make_run_config(tmp_path, {"langid": section})


def test_model_from_s3_is_copied_once_per_worker(tmp_path, monkeypatch):
    """A gs:// or s3:// model is fetched through pipeline.storage into a local cache, once."""
    import moto.server as moto_server  # dev extra: a missing package is a failure, not a skip
    from filters.langid import default_model_path
    from pipeline.stages import langid as stage_module

    server = moto_server.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                           "GLMDATA_CACHE": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(key, value)
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http",
                          allow_bucket_creation=True).create_dir("models")
        storage.write_bytes("s3://models/lid.ftz", Path(default_model_path()).read_bytes())
        local = stage_module.local_model("s3://models/lid.ftz")
        assert local.startswith(str(tmp_path / "cache")) and Path(local).read_bytes() == Path(default_model_path()).read_bytes()
        assert stage_module.local_model("s3://models/lid.ftz") == local  # cached: no second copy
        cfg = make_run_config(tmp_path / "w", {"langid": {"model": "s3://models/lid.ftz"}})
        stage = LangidStage(cfg)
        assert stage.input_paths() == ["s3://models/lid.ftz"]
        assert stage.identifier.identify("Ceci est une phrase en français.").lang == "fr"
    finally:
        storage._cached_copy.cache_clear()
        server.stop()


def test_config_defaults_are_the_filters_defaults():
    """The shipped defaults (documented in LangidSection) are what filters.langid uses on its own,
    so benchmarks that build LanguageIdentifier() measure the stage's behaviour."""
    from filters.langid import LanguageFilter, LanguageIdentifier
    from pipeline.stages.langid import LangidSection, build_filter, build_identifier

    def settings(obj) -> dict:
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}

    section = LangidSection()
    assert settings(build_identifier(section)) == settings(LanguageIdentifier())
    assert vars(build_filter(section)) == vars(LanguageFilter(min_score={"en": 0.65, "zh": 0.65}))
