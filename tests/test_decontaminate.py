"""Decontamination (filters/decontam.py, pipeline/stages/decontaminate.py): items found verbatim and
as pages edit them, short items, numbers kept apart, benchmark files read, both engines equal."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, make_run_config, write_finished_stage
from filters.decontam import (_UNMATCHED_HAN, BenchmarkItem, ContaminationIndex, _folded_leads, _han_bound, _split_han,
                              item_lang)
from filters.fast_normalize import normalize_chinese
from filters.normalize import to_simplified, to_traditional
from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import run_stage
from pipeline.stage import StageStats
from pipeline.stages.decontaminate import Benchmark, DecontaminateStage, read_items

FIXTURE = REPO / "pipeline" / "demo_text" / "benchmark_items.jsonl"
EN = ("Which gas do green plants take in from the air and use, together with water and sunlight, "
      "to make their own food?")
ZH = "绿色植物在阳光下利用二氧化碳和水制造有机物并释放氧气，这一过程叫作什么？"
HOST_EN = "The town council met on Tuesday evening to discuss the new library and the bus timetable. "
HOST_ZH = "镇上的小学有三百多名学生，学校的图书室每逢周三下午对居民开放。"


def index(**kw) -> ContaminationIndex:
    return ContaminationIndex([BenchmarkItem("b", 0, EN, "en"), BenchmarkItem("b", 1, ZH, "zh"),
                               BenchmarkItem("b", 2, "What is the capital city of the imaginary island of Verland?", "en"),
                               BenchmarkItem("b", 3, "Name it.", "en")], **kw)


@pytest.mark.parametrize("text, lang, expected", [
    (HOST_EN + EN + " " + HOST_EN, "en", [0]),
    (HOST_EN + EN.upper().replace(",", " ,"), "en", [0]),          # case and spacing
    (HOST_ZH + ZH + HOST_ZH, "zh", [1]),
    (HOST_ZH + to_traditional(ZH).replace("，", ", "), "zh", [1]),  # Traditional, ASCII punctuation
    (HOST_EN + "Quiz: what is the capital city of the imaginary island of Verland? Answer below.", "en", [2]),  # short item
    (HOST_EN * 3, "en", []),
    (HOST_ZH * 3, "zh", []),
    (None, "en", []),
])
def test_finds_items_as_pages_carry_them(text, lang, expected):
    assert index().find([text], [lang]) == [expected]


@pytest.mark.parametrize("text, lang, expected", [
    (HOST_ZH + EN + HOST_ZH, "zh", [0]),  # an exam-prep page quoting an English benchmark
    (HOST_ZH + "题目：What is the capital city of the imaginary island of Verland?答案见下。", "zh", [2]),  # short item
    (HOST_EN + ZH + HOST_EN, "en", [1]),
    (HOST_EN + to_traditional(ZH) + " " + HOST_EN, None, [1]),
    (HOST_ZH + HOST_EN + HOST_ZH, "zh", []),  # English and Chinese text that quotes no item
    (HOST_EN + "English | 中文 | 日本語 " + HOST_EN + HOST_ZH, "en", []),
])
def test_finds_items_whatever_the_page_language(text, lang, expected):
    assert index().find([text], [lang]) == [expected]


FORMULA_ZH = r"已知函数$f(x)=\frac{\sin x + \cos x}{\sqrt{x^2+1}}$，则$f'(0)$的值为"


def test_item_lang_ignores_latex():
    """LaTeX command names outnumber the Han characters of a formula-heavy Chinese item."""
    assert item_lang(FORMULA_ZH) == "zh"
    assert item_lang(r"Evaluate $\int_0^1 x^2 \, dx$ and give the answer as a fraction.") == "en"
    assert item_lang(r"设集合$A=\{x \mid x^2<4\}$") == "zh"


@pytest.mark.parametrize("host, lang", [(HOST_ZH, "zh"), (HOST_EN, "en")])
def test_formula_heavy_chinese_item_is_found(host, lang):
    ix = ContaminationIndex([BenchmarkItem("b", 0, FORMULA_ZH, item_lang(FORMULA_ZH))])
    assert ix.find([host + FORMULA_ZH + host], [lang]) == [[0]]


# Items of an English benchmark (`lang: en`; item_lang takes the second for English, the first for Chinese)
QUOTES_ZH = ["Translate into English: 我爱北京天安门，天安门上太阳升。",  # three words: too short as words
             "In the sentence 我爱北京天安门，天安门上太阳升, which word is the verb? Answer in English."]


@pytest.mark.parametrize("host, lang", [(HOST_ZH, "zh"), (HOST_EN, "en")])
@pytest.mark.parametrize("item", QUOTES_ZH, ids=["three-words", "chinese-inside"])
def test_english_item_quoting_chinese_is_found_in_pages_of_either_language(host, lang, item):
    """Every word n-gram of these items holds a Han word, and a Chinese page is read as words only where
    it has no Han: their Chinese sentence is indexed as characters too, as a Chinese item's would be."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, item, "en")])
    assert ix.too_short == []
    assert ix.find([host + item + host, host + "我爱北京。" + host], [lang, lang]) == [[0], []]


@pytest.mark.parametrize("host, lang", [(HOST_ZH, "zh"), (HOST_EN, "en")], ids=["zh-page", "en-page"])
@pytest.mark.parametrize("length", [10, 11, 12])
def test_a_short_chinese_sentence_in_an_english_item_is_found_quoted_alone(host, lang, length):
    """As a Chinese item of 10 to 12 characters is (whole, in the shorter pass): the item's character
    13-grams around such a sentence hold letters of its English, which a page quoting the sentence lacks."""
    quote = "我爱北京天安门天安门上太阳升"[:length]
    ix = ContaminationIndex([BenchmarkItem("b", 0, f"In the sentence {quote}, which word is the verb?", "en")])
    assert ix.find([host + quote + host, host + quote[:8] + host], [lang, lang]) == [[0], []]


# Each word n-gram of these holds a Chinese word (the first and last are short: their 8-grams)
HAN_WORD_ITEMS = ["Which of the following best describes 关系 in Chinese business culture today?",
                  "In Chinese, the idiom “画蛇添足” (drawing legs on a snake) warns against what kind of behaviour?",
                  "Which of these words means relationship?\n关系\n面子\n人情"]


@pytest.mark.parametrize("item", HAN_WORD_ITEMS, ids=["word", "quoted-idiom", "options-on-lines"])
def test_english_item_holding_a_chinese_word_is_found_in_a_chinese_page(item):
    """A Chinese page is read as words: when it was read so only over its runs without Han, no run held
    the word, and 40% of 400 State of the Union sentences given one or two Chinese words were missed in
    Chinese news (found in English news)."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, item, "en")])
    spaced_chinese = "我们 关系 很好，大家 “画蛇添足” 了。"
    assert ix.find([HOST_ZH + item + HOST_ZH, HOST_ZH + spaced_chinese + HOST_EN + HOST_ZH], ["zh", "zh"]) == [[0], []]


# Each word n-gram of these holds a Chinese word joined to the English without a space
GLUED_CHINESE_ITEMS = [
    "In Chinese business culture, the word'关系' means a network of personal relationships built up over many years.",
    "In Chinese business culture the word“关系”means a network of personal relationships built up over many years.",
    "In Chinese business culture, the term关系refers to a network of personal relationships built up over many years.",
    "In Chinese business culture, which word(关系) names the network of personal relationships built up over many years?",
    "Translate the three pronouns 我们，你们。他们 into English and say which of them is the second person plural."]


@pytest.mark.parametrize("item", GLUED_CHINESE_ITEMS, ids=["quote", "curly-quotes", "no-mark", "parentheses", "zh-punctuation"])
def test_english_item_joining_a_chinese_word_to_its_words_is_found_in_a_chinese_page(item):
    """A Chinese page was read as words only over runs without Han but for Chinese words after a space:
    a word glued to the English, or words joined by Chinese punctuation, ended the run (251-311 of 400 State
    of the Union sentences so edited were found in Chinese news: bench/decontam.py --mixed). Now the whole
    page is read as words, Han split from the letters it touches, in item and page alike."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, item, "en")])
    same_words_in_prose = "我们的关系，你们。他们很好。"
    assert ix.find([HOST_ZH + item + HOST_ZH, HOST_ZH + same_words_in_prose + HOST_ZH], ["zh", "zh"]) == [[0], []]


TRADITIONAL_WORDS_ITEM = "Which of the words 關係 and 面子 names the network of personal relationships in Chinese business?"


@pytest.mark.parametrize("item, page, lang", [
    (TRADITIONAL_WORDS_ITEM, to_simplified(HOST_ZH + TRADITIONAL_WORDS_ITEM + HOST_ZH), "zh"),  # langid's t2s (default)
    (TRADITIONAL_WORDS_ITEM, HOST_EN + to_simplified(TRADITIONAL_WORDS_ITEM) + HOST_EN, "en"),
    (to_simplified(TRADITIONAL_WORDS_ITEM), to_traditional(HOST_ZH + TRADITIONAL_WORDS_ITEM + HOST_ZH), "zh"),  # t2s off
], ids=["traditional-item-converted-page", "traditional-item-simplified-en-page", "simplified-item-traditional-page"])
def test_chinese_words_of_an_english_item_match_in_either_script(item, page, lang):
    """Words were normalized without OpenCC t2s (characters were not): an English item's Traditional
    word missed the page langid had converted to Simplified, and a Simplified one a Traditional page kept as
    written with t2s off (252 of 400 found each way: bench/decontam.py --mixed)."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, item, "en")])
    assert ix.find([page, to_simplified(HOST_ZH) * 2], [lang, "zh"]) == [[0], []]


_UNMATCHED = chr(_UNMATCHED_HAN)


def test_chinese_prose_read_as_words_is_one_placeholder_a_stretch():
    """A page read as words: Han split from the letters it touches; a Han stretch longer than any Chinese
    word of the items is one placeholder (no item holds it), once for stretches with only spaces or marks
    between them, never dropped: the English words on either side of it stay apart."""
    s = normalize_chinese("图书室开放a镇上的小学，学校的图书室 cd关系 图书室开放")
    assert _split_han(s, 2).split() == [_UNMATCHED, "a", _UNMATCHED, "cd", "关系", _UNMATCHED]
    assert _split_han(s, 5).split() == ["图书室开放", "a", "镇上的小学", _UNMATCHED, "cd", "关系", "图书室开放"]


def test_too_short_items_are_counted_not_indexed():
    assert index().too_short == [3]


def test_numbers_keep_their_value_in_chinese():
    """Dedup's normalization folds every number to 0: a date-and-figure sentence would then match
    any page with the same shape of dates. Here only the same numbers match."""
    item = "二零二三年度报告显示，2015年7月17日至2015年8月14日期间共有363名学生参加了比赛。"
    ix = ContaminationIndex([BenchmarkItem("b", 0, item, "zh")])
    other_dates = "报告显示，2019年3月11日至2019年4月22日期间共有811名学生参加了比赛。"
    assert ix.find([HOST_ZH + item, HOST_ZH + other_dates], ["zh", "zh"]) == [[0], []]


def test_read_items_jsonl_parquet_text(tmp_path):
    items = read_items(Benchmark("demo", str(FIXTURE), ["question"]))
    assert len(items) == 16 and {i.lang for i in items} == {"en", "zh"}
    pq.write_table(pa.table({"q": ["one", None], "a": ["x", "y"]}), tmp_path / "b.parquet")
    assert [i.text for i in read_items(Benchmark("p", str(tmp_path / "b.parquet"), ["q", "a"]))] == ["one\nx", "y"]
    (tmp_path / "b.txt").write_text("first item\n\nsecond item\n")
    assert [i.text for i in read_items(Benchmark("t", str(tmp_path / "b.txt")))] == ["first item", "second item"]
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n{"other": 1}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: .*fields \['question'\]"):
        read_items(Benchmark("bad", str(tmp_path / "bad.jsonl"), ["question"]))
    # A lone surrogate escape: the index build failed on it, naming neither file nor line
    (tmp_path / "surrogate.jsonl").write_text('{"question": "x"}\n{"question": "中文\\ud800题目"}\n')
    with pytest.raises(ConfigError, match=r"surrogate.jsonl:2: .*lone surrogate U\+D800"):
        read_items(Benchmark("s", str(tmp_path / "surrogate.jsonl"), ["question"]))
    # A compression it does not read (zstd's magic number): the file is named, no bare UnicodeDecodeError
    (tmp_path / "b.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ConfigError, match=r"b.jsonl.zst: .*expected UTF-8 text .*byte 1 is not UTF-8"):
        read_items(Benchmark("zst", str(tmp_path / "b.jsonl.zst"), ["question"]))


def _docs() -> list[dict]:
    texts = [HOST_EN + EN, HOST_ZH + ZH, HOST_EN * 2, HOST_ZH * 2, HOST_EN + EN.lower()]
    langs = ["en", "zh", "en", "zh", "en"]
    return [{"id": f"d{i}", "text": t, "lang": lang, "source_file": "f", "source_offset": i}
            for i, (t, lang) in enumerate(zip(texts, langs))]


def _batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{k: d[k] for k in ("id", "text", "lang")} for d in _docs()])


def test_stage_on_both_engines(tmp_path, engines):
    results = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / name, {"decontaminate": {
            "benchmarks": [{"name": "demo", "path": str(FIXTURE), "fields": ["question"]}]}}, engine=name)
        write_finished_stage(cfg.run.workdir, "dedup", _docs(), files=2)
        stats = run_stage(DecontaminateStage(cfg), engine)
        StageStats.from_dict(stats).check_conservation(name)
        rows = {r["id"]: r for p in storage.expand(f"{cfg.run.workdir}/decontaminate")
                if p.endswith(".parquet") and "/errors/" not in p for r in pq.read_table(p).to_pylist()}
        results[name] = (stats, rows)
    (stats, rows), (beam_stats, beam_rows) = results["spark"], results["beam"]
    assert rows == beam_rows and stats["report"] == beam_stats["report"]
    contaminated = {"d0", "d1", "d4"}
    assert {i for i, r in rows.items() if r["q_contam_items"]} == contaminated
    assert rows["d1"]["q_contam_benchmarks"] == "demo" and rows["d2"]["q_contam_benchmarks"] is None
    assert {i for i, r in rows.items() if r.get("reject_reason")} == contaminated
    assert rows["d0"]["reject_reason"] == "contaminated:demo" and rows["d0"]["reject_detail"] == "demo#1"
    report = stats["report"]["benchmarks"]["demo"]
    assert (report["items"], report["items_found"], report["documents"]) == (16, 2, 3)
    assert report["top_items"][0] == {"item": 1, "documents": 2, "text": EN}
    assert not [k for k in stats["extra"] if k.startswith("item|")]


def test_flag_keeps_and_marks(tmp_path):
    cfg = make_run_config(tmp_path, {"decontaminate": {
        "action": "flag", "benchmarks": [{"name": "demo", "path": str(FIXTURE), "fields": ["question"]}]}}, engine="beam")
    result = DecontaminateStage(cfg).process_batch(_batch())
    assert result.reasons == [None] * 5
    assert result.rows.column("q_contam_benchmarks").to_pylist() == ["demo", "demo", None, None, "demo"]


def test_a_benchmark_name_holding_a_bar_is_summarized(tmp_path):
    """Per-item counts are keyed `item|<benchmark>|<item>`: the summary at the stage's end split them on every bar."""
    cfg = make_run_config(tmp_path, {"decontaminate": {
        "benchmarks": [{"name": "mmlu|test", "path": str(FIXTURE), "fields": ["question"]}]}}, engine="beam")
    stage = DecontaminateStage(cfg)
    stats = StageStats()
    stats.extra.update(stage.process_batch(_batch()).extra)
    summary = stage.summarize(stats)["benchmarks"]["mmlu|test"]
    assert (summary["items_found"], summary["documents"], summary["top_items"][0]["item"]) == (2, 3, 1)


@pytest.mark.parametrize("reported", [["item|demo|5", "item|demo|1"], ["item|demo|1", "item|demo|5"]])
def test_top_items_tied_are_listed_by_item_whatever_order_units_reported_them(tmp_path, reported):
    cfg = make_run_config(tmp_path, {"decontaminate": {
        "top_items": 1, "benchmarks": [{"name": "demo", "path": str(FIXTURE), "fields": ["question"]}]}}, engine="beam")
    stats = StageStats()
    stats.extra.update({key: 2 for key in reported})
    assert [t["item"] for t in DecontaminateStage(cfg).summarize(stats)["benchmarks"]["demo"]["top_items"]] == [1]


def test_no_benchmark_keeps_everything(tmp_path):
    cfg = make_run_config(tmp_path, {"decontaminate": {}}, engine="beam")
    result = DecontaminateStage(cfg).process_batch(_batch())
    assert result.reasons == [None] * 5


def test_demo_config_points_at_the_fixture():
    from pipeline.stages import load_config

    section = load_config(REPO / "configs" / "demo.yaml").section("decontaminate")
    assert [b.name for b in section.benchmarks] == ["demo-bench"]
    assert json.loads(FIXTURE.read_text().splitlines()[0])["id"] == "en-01"


# Chinese items made mostly of digits (an answer or a question of a Chinese benchmark)
DIGIT_ITEMS = ["2000年人口統計334,563。", "GDP增长6.5%，CPI上涨2.1%，2018年第3季度", "截至2020年11月1日零时共1,411,778,724人"]


@pytest.mark.parametrize("script", [to_simplified, to_traditional], ids=["simplified", "traditional"])
@pytest.mark.parametrize("host, lang", [(HOST_EN, "en"), (HOST_ZH, "zh")], ids=["en-page", "zh-page"])
def test_chinese_item_mostly_digits_is_found_in_pages_of_either_language(host, lang, script):
    """An English page was read as characters only if it held as many CJK characters as the Han-poorest
    item's best n-gram has Han, digits not counted though they become numerals that count: these items,
    a few Han characters each, were missed in English pages (of the 181 CMRC sentences at least 30% digits,
    160 found there before, 179 after, as in Chinese pages: bench/decontam.py --digits)."""
    ix = ContaminationIndex([BenchmarkItem("b", k, t, item_lang(t)) for k, t in enumerate(DIGIT_ITEMS)])
    pages = [host + script(t) + " " + host for t in DIGIT_ITEMS] + [host + "人口統計 334,563 and 2,000 " + host]
    assert ix.find(pages, [lang] * len(pages)) == [[0], [1], [2], []]


@pytest.mark.parametrize("host, lang", [(HOST_EN, "en"), (HOST_ZH, "zh")], ids=["en-page", "zh-page"])
def test_english_item_quoting_chinese_mostly_digits_is_found_quoted_alone(host, lang):
    """The item held too few CJK characters to be cut into the Chinese it quotes, and too few words
    to be indexed as words: found nowhere."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, f"Translate into English: {DIGIT_ITEMS[0]}", "en")])
    assert ix.too_short == []
    assert ix.find([host + DIGIT_ITEMS[0] + host], [lang]) == [[0]]


def test_short_chinese_items_mostly_digits_are_too_short():
    """A date or a figure with its unit, matched whole as a short item, met every page stating the same
    fact: 438 dates of the CMRC passages flagged 4 THUCNews and 8 DRCD pages (bench/decontam.py --digits)."""
    items = ["2011年6月28日", "1,411,778,724人", "2000年", "1949年新中国成立"]
    ix = ContaminationIndex([BenchmarkItem("b", k, t, "zh") for k, t in enumerate(items)])
    assert ix.too_short == [0, 1, 2]
    pages = [HOST_ZH + "会议于2011年6月28日召开。" + HOST_ZH, HOST_ZH + "1949年新中国成立。" + HOST_ZH]
    assert ix.find(pages, ["zh", "zh"]) == [[], [3]]


@pytest.mark.parametrize("text, expected", [
    ("GDP增长6.5%", 4), ("2 0 0 0 , 年", 5), ("In 2000 (年) there were", 5),
    ("Beijing (北京) " + HOST_EN + "in 2019 and 2020.", 8),  # numbers far from the Han count too
    ("Tel. 555-0123-4567-8901 。", 13), ("Tel. 555-0123-4567-8901", 0),  # no CJK character: never read
])
def test_han_bound_counts_the_digits_an_ngram_may_hold(text, expected):
    """Which English pages are read as characters: those holding a CJK character where a 13-gram may
    hold as many Han (digits, which become numerals, counted) as an indexed n-gram."""
    assert _han_bound(text, _folded_leads(text), 13) == expected


def test_an_english_page_sharing_an_items_figures_is_flagged_however_far_its_han():
    """Whether a page holding a CJK character is read as characters may not depend on where its Han
    lie: one far from the figures it shares with an item was not enough, thirteen were (a review of
    9b07e29, where an n-gram had to hold a Han character to count its digits)."""
    ix = ContaminationIndex([BenchmarkItem("b", 0, "某班同学的数学成绩依次为 85 90 78 92 88 76 95 81 分，求平均分。", "zh")])
    page = "The scores in the class report were 85 90 78 92 88 76 95 81 points. One character on the board: 中."
    assert ix.find([page, page + " 今天天气很好我们一起去公园散步吧", page.replace("中", "z")], ["en"] * 3) == [[0], [0], []]
