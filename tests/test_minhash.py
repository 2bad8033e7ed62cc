"""filters.minhash against datasketch (the oracle) and the normalization rules it promises."""
from __future__ import annotations

import json

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from hypothesis import given, settings
from hypothesis import strategies as st

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
