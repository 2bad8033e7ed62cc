"""filters.minhash against datasketch (the oracle) and the normalization rules it promises."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.fast_normalize import (code_points, normalize_chinese, normalize_word_lines, reference_chinese,
                                    reference_words)
from filters.fast_t2s import t2s_code_points
from filters.minhash import (EMPTY_HASH, MinHasher, Shingling, band_hashes, normalize_words, optimal_bands,
                             shingle_hash32)
from filters.normalize import to_traditional


def datasketch_signature(shingles: list[str], num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash32)
    m.update_batch([s.encode("utf-8") for s in shingles])
    return m.hashvalues


def assert_matches_datasketch(texts, langs, shingling=Shingling(), num_perm=128, seed=1):
    sig = MinHasher(num_perm, seed, shingling).signatures(texts, langs)
    for i, (text, lang) in enumerate(zip(texts, langs)):
        expected = datasketch_signature(shingling.shingles(text, lang), num_perm, seed)
        assert np.array_equal(sig[i], expected), (i, text[:80])


@pytest.fixture(scope="module")
def real_docs(shared_data):
    def load(name, n):
        return [json.loads(line)["text"] for line in open(shared_data / "text" / name, encoding="utf-8")][:n]
    en = load("en-news-scrapinghub.jsonl", 20)
    zh = load("zh-news-thucnews.jsonl", 10) + load("zh-hant-wiki-drcd.jsonl", 10)
    return en + zh, ["en"] * len(en) + ["zh"] * len(zh)


@pytest.mark.parametrize("shingling", [Shingling(), Shingling(zh_tokens="word"), Shingling(en_ngram=3, zh_ngram=2)])
def test_signatures_equal_datasketch_on_real_text(real_docs, shingling):
    texts, langs = real_docs
    edge_cases = ["", "!!! ???", "Hi", "two words", "短", "中文", "1, 2, 3", None]
    assert_matches_datasketch(texts + edge_cases, langs + ["en", "en", "en", "en", "zh", "zh", "en", "zh"], shingling)


@pytest.mark.parametrize("num_perm,seed", [(64, 7), (256, 42)])
def test_signatures_follow_num_perm_and_seed(real_docs, num_perm, seed):
    texts, langs = real_docs
    assert_matches_datasketch(texts[:5] + texts[-3:], langs[:5] + langs[-3:], num_perm=num_perm, seed=seed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=60), min_size=1, max_size=6),
       st.sampled_from(["en", "zh", "ru", None]))
def test_signatures_equal_datasketch_on_any_text(texts, lang):
    assert_matches_datasketch(texts, [lang] * len(texts), Shingling(en_ngram=2, zh_ngram=3), num_perm=16)


def test_english_normalization_is_fineweb_style():
    assert normalize_words("Hello,   World!\n3.14 apples cost $20 — Café") == "hello world 0 apples cost 0 cafe"
    shingles = Shingling().shingles("One two three four five six.", "en")
    assert shingles == ["one two three four five", "two three four five six"]


def test_chinese_scripts_width_and_punctuation_fold_together():
    simplified = "北京大学是中国最早的国立综合性大学，创办于1898年。"
    variants = [to_traditional(simplified), simplified.replace("，", ",").replace("。", "."),
                "北京大学是中国最早的国立综合性大学，创办于１８９８年。", simplified.replace("，", "， ")]
    for tokens in ("char", "word"):
        sh = Shingling(zh_tokens=tokens)
        for v in variants:
            assert sh.shingles(v, "zh") == sh.shingles(simplified, "zh"), (tokens, v)


def test_short_documents_are_shingled_whole_and_stay_apart():
    sh = Shingling()
    assert sh.shingles("Hello world.", "en") == ["hello world"]
    assert sh.shingles("你好", "zh") == ["你好"]
    assert sh.shingles("?!", "en") == []
    sig = MinHasher().signatures(["Hello world.", "Hello there.", "", "?!"], ["en"] * 4)
    assert not np.any(sig[0] == sig[1])  # different single shingles: no slot in common
    assert np.all(sig[2] == EMPTY_HASH) and np.all(sig[3] == EMPTY_HASH)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.85, 0.9, 0.95])
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.1, 0.9), (0.3, 0.7)])
@pytest.mark.parametrize("num_perm", [64, 128])
def test_optimal_bands_equal_datasketch(threshold, weights, num_perm):
    assert optimal_bands(threshold, num_perm, *weights) == _optimal_param(threshold, num_perm, *weights)


def test_band_hashes_change_only_the_band_that_changed():
    sig = MinHasher().signatures(["the quick brown fox jumps over the lazy dog again"], ["en"])
    other = sig.copy()
    other[0, 5] ^= 1
    a, b = band_hashes(sig, 9, 13), band_hashes(other, 9, 13)
    assert a.dtype == np.int64 and a.shape == (1, 9)
    assert list(a[0] == b[0]) == [False] + [True] * 8  # permutation 5 lies in band 0
    with pytest.raises(ValueError, match="need 130 permutations"):
        band_hashes(sig, 10, 13)


def test_threads_get_the_same_signatures(real_docs):
    """Beam's DirectRunner hashes in threads while the per-process power tables grow."""
    from concurrent.futures import ThreadPoolExecutor

    from filters import minhash

    texts, langs = real_docs
    batches = [(texts[:k] * k, langs[:k] * k) for k in range(1, 25)]  # ever larger buffers
    expected = [MinHasher().signatures(t, lang) for t, lang in batches]
    for _ in range(3):
        minhash._POWERS = minhash._PowerTable()  # start small again
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda b: MinHasher().signatures(*b), batches))
        assert all(np.array_equal(g, e) for g, e in zip(got, expected))


# ---------------------------------------------------------------------------------------------
# The compiled normalization is byte-identical to the regex/OpenCC reference


def _shared_texts(shared_data) -> list[str]:
    """Every document of text/ and jsonl/, and every sentence of langid/ (32 languages, scripts
    from Greek final sigma and Turkish dotted I to Devanagari marks and Hangul)."""
    import gzip

    texts = []
    for path in sorted([*(shared_data / "text").glob("*.jsonl"), *(shared_data / "jsonl").glob("*.jsonl*"),
                        *(shared_data / "langid").glob("*.jsonl")]):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
            texts += [r.get("text") or r.get("raw_content") or "" for r in map(json.loads, f)]
    return texts


def assert_fast_equals_reference(texts):
    for text in texts:
        assert normalize_words(text) == reference_words(text), text[:200]
        assert normalize_word_lines(text) == [reference_words(line) for line in text.split("\n")], text[:200]
        assert normalize_chinese(text) == reference_chinese(text), text[:200]


def _t2s_path(text: str) -> str:
    cps = code_points(text)
    converted = t2s_code_points(cps)
    return "OpenCC" if converted is None else "nothing to convert" if converted is cps else "character by character"


def test_fast_normalization_equals_reference_on_shared_data(shared_data):
    texts = _shared_texts(shared_data)
    assert len(texts) > 16_000 and sum(map(len, texts)) > 6_000_000
    assert_fast_equals_reference(texts)
    paths = Counter(map(_t2s_path, texts))
    assert min(paths.values()) > 50 and len(paths) == 3, paths


# Every punctuation category, digits of several scripts (full-width, Arabic-Indic, Devanagari),
# accents precomposed and combining, full-width letters, Traditional characters and phrases,
# Hangul, emoji with ZWJ and skin tones, final sigma, dotted I, CJK compatibility ideographs.
_SPECIAL_CHARS = ("Σσς İıÉéÅΩΩ 가힣 ﬁ ß ẞ ǅ ０１９ ＡＺａｚ ！＂＃％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～"
                  " 、。「」『』【】《》〈〉…—–·・〜｡ \u3000 ٠١٩ ०९ 𝟘𝟙 ²½Ⅻ 國學後時麼乾隆著像么 丽 "
                  "\u00a0\t\n_-.,'\"")
_SNIPPETS = ("ΟΔΟΣ ὁδός", "e\u0301", "a\u0308\u0323", "😀👍🏽👩\u200d💻🇨🇳", "3.14", "１，０００", "３：３０",
             "1。5", "乾隆", "回覆", "想像", "么麼", "İstanbul", "नमस्ते")
_TEXT = st.lists(st.one_of(
    st.sampled_from(_SNIPPETS),
    st.sampled_from(_SPECIAL_CHARS),
    st.characters(categories=("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")),
    st.characters(categories=("Nd", "No", "Nl")),
    st.characters(codec="ascii"),
    st.characters(exclude_categories=("Cs",)),
), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_fast_normalization_equals_reference_on_any_text(text):
    assert_fast_equals_reference([text, text.upper(), f"3.{text}.5", f"{text}1.2.3{text}"])


def test_fast_normalization_equals_reference_for_every_code_point():
    """Each code point between letters, between digits and after a letter, 4,096 per document
    (complex ones apart, as each would send its whole document to the reference path). The
    Chinese folding touches the BMP only: beyond it the Chinese tables are the English ones."""
    from filters.fast_normalize import COMPLEX, _tables

    tables = _tables()
    simple = (tables.kind != COMPLEX) & (tables.zh_kind != COMPLEX)
    code = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and simple[cp]]
    assert len(code) > 1_000_000
    assert np.array_equal(tables.zh_kind[0x10000:], tables.kind[0x10000:])
    for lo in range(0, len(code), 4096):
        text = " ".join(f"a{c}b 1{c}2 a{c}" for c in map(chr, code[lo:lo + 4096]))
        assert normalize_words(text) == reference_words(text)
        if code[lo] < 0x10000:
            assert normalize_chinese(text) == reference_chinese(text)
    complex_ones = [chr(cp) for cp in range(0x110000) if not simple[cp] and not 0xD800 <= cp < 0xE000]
    assert "Σ" in complex_ones and "İ" in complex_ones
    assert_fast_equals_reference([f"ΟΔΟΣ {c}a1.2" for c in complex_ones])


def test_t2s_without_opencc_only_where_it_converts_character_by_character():
    from filters.fast_t2s import _tables
    from filters.normalize import to_simplified

    tables = _tables()
    assert tables is not None, "the opencc wheel's dictionaries could not be read"

    def t2s(text):
        cps = t2s_code_points(code_points(text))
        return None if cps is None else cps.tobytes().decode("utf-32-le" if cps.dtype == np.uint32 else "ascii")

    simplified = "北京大学是中国最早的国立综合性大学，什么像样"
    cps = code_points(simplified)
    assert t2s_code_points(cps) is cps  # nothing to convert: no copy
    traditional = "北京大學是中國最早的國立綜合性大學，甚麼像樣"
    assert t2s(traditional) == to_simplified(traditional) != traditional
    # a phrase that keeps a character ("乾隆", not "干隆"); a phrase whose characters never
    # change alone ("回覆" -> "回复"); a CJK compatibility ideograph (t2s normalizes it first)
    for text in ("中文乾隆年間", "请回覆我", "\uf900"):
        assert t2s(text) is None, text
    assert to_simplified("请回覆我") == "请回复我"
    every_change = "".join(chr(cp) for cp in np.flatnonzero(tables.flags == 1))
    assert len(every_change) > 4000
    assert t2s(" ".join(every_change)) == to_simplified(" ".join(every_change))
    # a character that is no dictionary key stays as it is
    unflagged = "\n".join(chr(cp) for cp in np.flatnonzero(tables.flags == 0) if not 0xD800 <= cp < 0xE000)
    assert to_simplified(unflagged) == unflagged
