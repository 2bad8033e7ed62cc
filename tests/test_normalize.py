"""Chinese normalization (filters.normalize) and script detection (filters.scripts)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.normalize import (clean_whitespace, fold_punctuation, fold_width, normalize_chinese, to_simplified,
                               to_traditional)
from filters.scripts import SLOT_NAMES, detect_han_script, han_ratio, letters_only, line_script_histograms, script_counts


def test_opencc_conversions():
    assert to_simplified("漢語的說明書，發展與後來") == "汉语的说明书，发展与后来"
    assert to_traditional("汉语的说明书") == "漢語的說明書"
    assert to_simplified("已经是简体") == "已经是简体"


def test_fold_width_keeps_chinese_punctuation():
    assert fold_width("ＡＢＣ　ｘｙｚ１２３＃％＠") == "ABC xyz123#%@"
    chinese = "你好，世界。「引用」、『書名』：一；二！三？（四）～"
    assert fold_width(chinese) == chinese
    # Between digits, full-width comma and colon are number separators.
    assert fold_width("价格１，０００元，时间３：３０") == "价格1,000元，时间3:30"


def test_clean_whitespace():
    text = "  第一行\u3000\u3000有  空格\t\t和制表符 \r\n\r\n\r\n\n第二\x00段\u200b落\x07\n\n\n\nend  "
    assert clean_whitespace(text) == "第一行 有 空格 和制表符\n\n第二段落\n\nend"
    assert clean_whitespace("a\nb\nc") == "a\nb\nc"  # single newlines are kept
    assert clean_whitespace("👨\u200d👩") == "👨\u200d👩"  # ZWJ joins emoji: kept


def test_fold_punctuation_for_shingles():
    assert fold_punctuation("你好，世界。「引用」《书》？！…") == '你好,世界."引用"<书>?!...'


def test_normalize_chinese_flags():
    text = "漢語　ＡＢＣ，測試  x\r\n"
    assert normalize_chinese(text) == "汉语 ABC，测试 x"
    assert normalize_chinese(text, t2s=False) == "漢語 ABC，測試 x"
    assert normalize_chinese(text, fold_width=False, whitespace=False) == "汉语　ＡＢＣ，测试  x\r\n"


def test_t2s_skips_flagged_lines():
    """Flagged lines keep their kanji; the others convert as in the whole text; whitespace and
    width folding still apply to every line."""
    text = "漢語的說明書\n東京駅の広場　ＡＢＣ\r\n\n發展與後來\n場所"
    assert normalize_chinese(text, t2s_skips=[False, True, True, False, False]) == \
           "汉语的说明书\n東京駅の広場 ABC\n\n发展与后来\n场所"
    assert normalize_chinese(text, t2s_skips=[False] * 5) == normalize_chinese(text)
    with pytest.raises(ValueError):
        normalize_chinese(text, t2s_skips=[False])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab 中文，。\n\t\r\u3000ＡＢ１２，：\x00\u200b"))))
def test_normalization_is_idempotent(text):
    once = normalize_chinese(text)
    assert normalize_chinese(once) == once
    assert fold_width(fold_width(text)) == fold_width(text)
    assert clean_whitespace(clean_whitespace(text)) == clean_whitespace(text)
    assert "\r" not in clean_whitespace(text)


def test_script_counts_and_han_ratio():
    counts = script_counts("Hello 世界 こんにちは カタカナ 한국어 Привет é, 123!")
    assert counts == {"Latin": 6, "Han": 2, "Hiragana": 5, "Katakana": 4, "Hangul": 3, "Cyrillic": 6}
    assert script_counts("") == {} and script_counts("123 ,.!") == {}
    assert han_ratio("中文ab，") == pytest.approx(2 / 5)  # whitespace excluded, punctuation counted
    assert han_ratio("中文 ab") == pytest.approx(2 / 4)
    assert han_ratio("") == 0.0
    assert script_counts("𠀀𪚥") == {"Han": 2}  # extension B and beyond are Han
    assert letters_only("Héllo, wörld! 123 हिन्दी") == "Héllo  wörld      हिन्दी"  # Devanagari vowel signs kept


@pytest.mark.parametrize("text", ["ab\n\n中文 x\nこんにちは\n", "", "\n", "one line", "\r\nwindows\r\n"])
def test_line_histograms_match_per_line(text):
    counts, weights = line_script_histograms(text)
    lines = text.split("\n")
    assert counts.shape[0] == weights.shape[0] == len(lines)
    for i, line in enumerate(lines):
        assert {SLOT_NAMES[k]: int(n) for k, n in enumerate(counts[i][:len(SLOT_NAMES)]) if k and n} == script_counts(line)
        letters = [c for c in line if c.isalpha()]
        assert weights[i][1:len(SLOT_NAMES)].sum() == sum(len(c.encode()) for c in letters)


def test_detect_han_script_small():
    assert detect_han_script("這是繁體中文的句子。") == "Hant"
    assert detect_han_script("这是简体中文的句子。") == "Hans"
    assert detect_han_script("中文") is None  # characters both variants share
    assert detect_han_script("English only") is None


def test_detect_han_script_on_real_wikipedia_and_news(shared_data):
    expected = {"zh-wiki-cmrc2018.jsonl": "Hans", "zh-hant-wiki-drcd.jsonl": "Hant", "zh-news-thucnews.jsonl": "Hans"}
    for name, script in expected.items():
        docs = [json.loads(line)["text"] for line in (shared_data / "text" / name).open(encoding="utf-8")]
        wrong = [d[:60] for d in docs if detect_han_script(d) != script]
        assert not wrong, f"{name}: {len(wrong)} of {len(docs)} not {script}: {wrong[:3]}"


def test_detect_han_script_on_legacy_encodings(shared_data):
    """SIGHAN 2005: PKU is Simplified (mainland), Academia Sinica and CityU are Traditional."""
    enc = shared_data / "encodings"
    assert detect_han_script((enc / "sighan2005-pku_test.utf8.txt").read_text(encoding="utf-8")) == "Hans"
    assert detect_han_script((enc / "sighan2005-as_test.utf8.txt").read_text(encoding="utf-8")) == "Hant"
    assert detect_han_script((enc / "sighan2005-cityu_test.utf8.txt").read_text(encoding="utf-8")) == "Hant"
