"""Blocklists (filters/blocklist.py) and the quality defaults tuned on labelled data: URL matching as
FineWeb's URL filter, the shipped UT1 list, word counting with CJK-aware boundaries, soft words
counted and never fatal, Chinese length and repetition rules that keep short and duplicated news,
C4's terminal-punctuation rule off."""
from __future__ import annotations

import random
import re

import numpy as np
import pytest

from filters.blocklist import HashedNames, UrlBlocklist, WordBlocklist, WordMatcher, decompressed, trie_regex
from filters.chinese import ChineseGopherRepetition, ChineseWebText, chinese_words, sentence_line_fraction
from filters.repetition import Doc, without_longest_repeat
from pipeline.stages.quality import DEFAULT_DATA, EnglishRules, QualitySection


def _url_doc(url: str) -> Doc:
    return Doc("text", str.split, url)


def _names(*names: str) -> HashedNames:
    return HashedNames.from_lines("\n".join(names).encode())


def test_url_domains_block_their_subdomains_only():
    rule = UrlBlocklist(domains=_names("bad.example", "x.org"))
    judged = {url: rule.judge(_url_doc(url), {}) for url in (
        "http://bad.example/a", "https://www.bad.example/", "http://m.cdn.bad.example:8080/x",
        "http://notbad.example/", "http://bad.example.com/", "http://x.org", "http://ok.org/x.org")}
    assert {u: r and r.reason for u, r in judged.items()} == {
        "http://bad.example/a": "blocklist:url_domain", "https://www.bad.example/": "blocklist:url_domain",
        "http://m.cdn.bad.example:8080/x": "blocklist:url_domain", "http://notbad.example/": None,
        "http://bad.example.com/": None, "http://x.org": "blocklist:url_domain", "http://ok.org/x.org": None}


def test_url_lists_words_soft_words_and_subwords():
    rule = UrlBlocklist(urls=_names("site.example/bad/page"), banned_words=["badword"],
                        soft_words=["nude", "girls"], soft_word_threshold=2, banned_subwords=["big tits"])
    reasons = {url: (r.reason if (r := rule.judge(_url_doc(url), {})) else None) for url in (
        "https://www.site.example/bad/page", "http://site.example/bad/page2", "http://a.example/BadWord-x",
        "http://a.example/badwords", "http://a.example/nude", "http://a.example/nude-girls",
        "http://a.example/free_BigTits.html", "http://a.example/big")}
    assert reasons == {
        "https://www.site.example/bad/page": "blocklist:url", "http://site.example/bad/page2": None,
        "http://a.example/BadWord-x": "blocklist:url_word", "http://a.example/badwords": None,
        "http://a.example/nude": None, "http://a.example/nude-girls": "blocklist:url_soft_words",
        "http://a.example/free_BigTits.html": "blocklist:url_subword", "http://a.example/big": None}


def test_hashed_names_reads_commented_lists_and_finds_the_first_match():
    names = HashedNames.from_lines(b"# comment\nA.example  # upper case, trailing comment\n\nb.example\n")
    assert len(names) == 2
    assert names.first_match(["z.example", "b.example", "a.example"]) == 1
    assert names.first_match(["z.example"]) is None
    assert HashedNames(np.zeros(0, np.int64)).first_match(["a.example"]) is None


def test_shipped_ut1_list_is_real_size_and_blocks_a_listed_domain():
    raw = decompressed("ut1_domains.txt.zst", (DEFAULT_DATA / "ut1_domains.txt.zst").read_bytes())
    listed = raw[:raw.index(b"\n")].decode()
    names = HashedNames.from_lines(raw)
    assert len(names) > 4_500_000
    rule = UrlBlocklist(domains=names)
    assert rule.judge(_url_doc(f"https://sub.{listed}/page"), {}).reason == "blocklist:url_domain"
    assert rule.judge(_url_doc("https://en.wikipedia.org/wiki/Main_Page"), {}) is None


def test_trie_regex_matches_as_the_plain_alternation():
    rng = random.Random(7)
    words = {"".join(rng.choice("abc") for _ in range(rng.randint(1, 5))) for _ in range(60)}
    text = "".join(rng.choice("abc ") for _ in range(3000))
    plain = re.compile("|".join(map(re.escape, sorted(words, key=lambda w: (-len(w), w)))))
    assert [m.group() for m in re.finditer(trie_regex(words), text)] == [m.group() for m in plain.finditer(text)]


def test_word_matching_has_cjk_aware_boundaries():
    matcher = WordMatcher(["sex", "yabo", "成人视频"])
    assert matcher.count("Essex and Sussex") == 0
    assert matcher.count("yabo手机版 SEX, 看成人视频。") == 3
    assert matcher.count("sexy") == 0


def test_single_word_lists_count_as_the_pattern():
    rng = random.Random(3)
    words = ["ass", "sex", "nude", "cum", "x1"]
    matcher = WordMatcher(words)
    assert matcher._tokens is not None
    alphabet = list("asexnudcm1 X.-\u212a\u0130\u017f\u00e9\u6210\u4eba") + ["Ass", "SEX", "sexy", "cum!"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert matcher.count(text) == sum(1 for _ in matcher.pattern.finditer(text)), text


def test_soft_words_are_counted_never_fatal():
    rule = WordBlocklist(words=["xvideos"], soft_words=["nude", "escort"], min_hits=2)
    signals: dict = {}
    assert rule.judge(Doc("A nude statue; an escort ship; nude again.", str.split), signals) is None
    assert signals == {"blocklist_word_hits": 0, "soft_word_hits": 3}
    assert rule.judge(Doc("xvideos and xvideos", str.split), {}).reason == "blocklist:word"


def test_c4_terminal_punctuation_rule_is_off_by_default():
    """FineWeb's C4 setting: lines without terminal punctuation stay, so near-copies of a
    hard-wrapped text keep their lines for dedup."""
    section = QualitySection()
    assert section.en.c4.filter_no_terminal_punct is False
    assert EnglishRules().gopher_quality.max_non_alpha_words_ratio == 0.7


SHORT_NEWS = "新华社北京12月3日电，国务院总理今天在人民大会堂会见了来访的外国代表团，双方就经贸合作交换了意见。"
MENU = "\n".join(["首页", "新闻中心", "产品展示", "联系我们", "在线留言", "关于我们网站地图"])


def test_minimum_length_scales_with_the_page_structure():
    rule = ChineseWebText()
    assert 50 <= len(SHORT_NEWS) < 200
    assert rule.judge(Doc(SHORT_NEWS, chinese_words), {}) is None  # one sentence-ended paragraph
    assert rule.judge(Doc(MENU * 2, chinese_words), {}).reason == "zh:min_chars"  # lines that are not sentences
    assert rule.judge(Doc("短新闻。", chinese_words), {}).reason == "zh:min_chars"  # below min_chars_prose
    assert ChineseWebText(min_chars_prose=200).judge(Doc(SHORT_NEWS, chinese_words), {}).reason == "zh:min_chars"


def test_sentence_lines_allow_a_byline_after_the_full_stop():
    assert sentence_line_fraction("\n".join(["他说：“明天见。”", "比赛结束。(张 哲)", "首页 > 新闻", "本报记者摄影报道。本报记者某某摄"])) == 0.75


ARTICLE = ("今年以来，全市工业经济运行总体平稳，规模以上工业增加值同比增长百分之六点五，"
           "高技术制造业增加值增长百分之十二，新能源汽车产量同比增长一倍以上。"
           "市统计局有关负责人表示，下一步将继续加大对实体经济的支持力度，推动产业转型升级。")


def test_an_article_pasted_twice_is_not_repetitive():
    twice = ARTICLE + ARTICLE
    assert without_longest_repeat(twice, 13, 0.25) == ARTICLE
    assert ChineseWebText().judge(Doc(twice, chinese_words), {}) is None
    assert ChineseWebText(repeat_block_min_frac=1.0).judge(Doc(twice, chinese_words), {}).reason == \
        "zh:char_ngram_repetition"
    assert ChineseGopherRepetition().judge(Doc(twice, chinese_words), {}) is None
    assert ChineseGopherRepetition(repeat_char_ngram=0).judge(Doc(twice, chinese_words), {}) is not None


def test_spam_repeating_many_phrases_stays_repetitive():
    phrases = ["澳门威尼斯人官网注册送彩金", "北京赛车pk10开奖直播网站", "六合彩特码资料大全免费公开"]
    spam = "".join(phrases[i % 3] + f"第{i}期，" for i in range(30))
    assert len(without_longest_repeat(spam, 13, 0.25)) == len(spam)  # no block is a quarter of the page
    assert ChineseWebText().judge(Doc(spam, chinese_words), {}).reason == "zh:char_ngram_repetition"


@pytest.mark.parametrize("terms_file", ["zh_spam_terms.txt", "zh_adult_terms.txt"])
def test_chinese_lexicons_are_in_the_default_spam_rule(terms_file):
    assert any(p.endswith(terms_file) for p in QualitySection().zh.spam_terms_files)


PINYIN = "烟(yan)台(tai)市(shi)是(shi)一(yi)个(ge)美(mei)丽(li)的(de)海(hai)滨(bin)城(cheng)市(shi)。" * 6
CODE = "\n".join(["// 初始化数据库连接，读取配置文件中的参数", "int main() {", "    int count = 0; // 计数器",
                  "    for (int i = 0; i < 10; i++) {", "        count += i; // 累加", "    }",
                  "    printf(\"结果是 %d\", count);", "    return 0;", "}"] * 3)


def test_pinyin_annotated_text_and_source_code_are_dirty():
    from filters.chinese import ChineseNoise

    rule = ChineseNoise()
    assert rule.judge(Doc(PINYIN, chinese_words), {}).reason == "zh:pinyin_notes"
    assert rule.judge(Doc(CODE, chinese_words), {}).reason == "zh:code_lines"
    one_gloss = ARTICLE + "记者采访了当地居民张(zhang)先生。" + ARTICLE
    quoted_code = "\n".join([ARTICLE, "printf(\"hello\");", ARTICLE, ARTICLE])
    assert rule.judge(Doc(one_gloss, chinese_words), {}) is None
    assert rule.judge(Doc(quoted_code, chinese_words), {}) is None
