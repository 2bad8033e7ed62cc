"""filters/english.py's words are spaCy's: the chunk store (`_ChunkTokens`: shortcuts for common
chunk shapes, spaCy for the rest, token numbers expanded by a compiled pass) against spaCy's own
blank English tokenizer, on generated chunks and on every chunk of the shared English data; the
word ids, offsets and vocabulary it hands the rules against `Words` built from the strings; the
sentence counts C4 uses against spaCy's sentencizer."""
from __future__ import annotations

import functools
import gzip
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import english
from filters.english import english_word_count, english_words
from filters.repetition import Words

# Pieces that exercise spaCy's prefixes, suffixes, infixes, special cases and URL match
_PIECES = [*"abcxyzABCXYZ0123456789", *"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
           *"\u201c\u201d\u2018\u2019\u00ab\u00bb\u2013\u2014\u2026\u00b0\u00a9\u2122\u2764\u00e9\u00df\u00f1\u0416\u4e2d",
           "the", "US", "Mr", "Mr.", "e.g.", "U.S.", "'s", "n't", "\u2019s", "don", "can", "not", "gon", "na", "--",
           "---", "...", ":)", ";-)", "http://", "https://www.", "example", ".com", ".org/path?q=1", "@", "mail",
           "10km", "5pm", "a.m.", "$", "%", "'em", "well-known", "1.5", "2,000", "etc.", "Dr.", "i.e."]

chunk_strategy = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join)
text_strategy = st.lists(st.tuples(chunk_strategy, st.sampled_from([" ", "\n", "  ", "\t", " \n "])),
                         min_size=1, max_size=12).map(lambda parts: "".join(c + s for c, s in parts))


@functools.lru_cache(maxsize=1)
def _nlp():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def _spacy_words(text: str) -> list[str]:
    nlp = _nlp()
    nlp.max_length = max(nlp.max_length, len(text) + 10)
    return [t.text.strip() for t in nlp.tokenizer(text) if t.text.strip()]


@settings(max_examples=1500, deadline=None)
@given(text_strategy)
def test_words_are_spacys_on_generated_chunks(text):
    """Each chunk's tokens are spaCy's for that chunk. (On a whole text spaCy's last pass, which
    merges special cases such as ":)" back, can also see a case spanning two chunks: "( :)a" gives
    "(", ":", ")", "a", where ":)a" alone gives ":)", "a". Such texts are left out here.)"""
    expected = [word for chunk in text.split() for word in _spacy_words(chunk)]
    assert list(english_words(text)) == expected
    assert english_word_count(text) == len(expected)


def test_every_chunk_of_the_shared_english_data_is_tokenized_as_spacy_does(shared_data):
    texts = []
    for path in sorted((shared_data / "text").glob("en-*.jsonl")) + [shared_data / "langid/lingua-en.jsonl"]:
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    for path in sorted((shared_data / "jsonl").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    chunks = list(dict.fromkeys(c for t in texts for c in t.split()))
    assert len(chunks) > 50_000
    store = english._ChunkTokens(_nlp().tokenizer, english._chunk_tokens().punct_chars)  # cold: every chunk is new
    store.add(chunks)
    tokenizer = _nlp().tokenizer
    wrong = [c for c in chunks if store[c] != tuple(t.text for t in tokenizer(c))]
    assert not wrong, wrong[:20]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["the", "a", "cat", "sat", "on", "mat", "the.", "1,000", "--", "U.S.", "it's",
                                 "and", "that", "Be", "with", "#tag", "...", "x-y"]), max_size=60))
def test_english_words_hand_the_rules_what_words_of_the_strings_give(chunks):
    text = " ".join(chunks)
    ours, theirs = english_words(text), Words(_spacy_words(text))
    assert len(ours) == len(theirs) and list(ours) == theirs.words
    assert np.array_equal(ours.ids, theirs.ids)
    assert np.array_equal(ours.char_offsets, theirs.char_offsets)
    assert ours.vocabulary == theirs.vocabulary
    assert ours.not_all_letters() == theirs.not_all_letters()
    for word in ("the", "be", "and", "that", "with", "absent", "."):
        assert (word in ours) == (word in theirs)
    for n in (2, 5, 10):
        assert ours.ngram_measures(n) == theirs.ngram_measures(n)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(chunk_strategy, max_size=8), max_size=5))
def test_sentences_are_the_sentencizers(lines):
    """C4's sentence and word counts of lines (`_ChunkTokens.sentences_and_words`): spaCy's
    sentencizer on each line's tokens, chunk by chunk (see above)."""
    from spacy.tokens import Doc

    nlp = _nlp()
    sentences = words = 0
    for line in lines:
        tokens = [[t.text for t in nlp.tokenizer(chunk)] for chunk in line]
        doc = Doc(nlp.vocab, words=[t for chunk in tokens for t in chunk],
                  spaces=[i == len(chunk) - 1 for chunk in tokens for i in range(len(chunk))])
        sentences += len(list(nlp.get_pipe("sentencizer")(doc).sents)) if len(doc) else 0
        words += len(doc)
    assert english._chunk_tokens().sentences_and_words("\n".join(map(" ".join, lines))) == (sentences, words)


def test_starting_over_at_the_limit_keeps_the_words(monkeypatch):
    monkeypatch.setattr(english._ChunkTokens, "limit", 8)
    store = english._ChunkTokens(_nlp().tokenizer, english._chunk_tokens().punct_chars)
    texts = ["one two three, four.", "five six seven eight nine ten eleven", "U.S. isn't (here) -- twelve",
             "one two thirteen fourteen fifteen sixteen seventeen eighteen nineteen"]
    for text in texts * 2:
        words = store.words(text)
        assert list(words) == _spacy_words(text)
        assert store.count(text) == len(words)
    assert len(store) <= 9  # started over, never more than the limit and the last text's chunks


@pytest.mark.parametrize("text, words", [("", []), ("   \n ", []), ("a", ["a"]), ("\ud800 x\ud800,", ["?", "x", "?", ","])])
def test_edge_texts(text, words):
    assert list(english_words(text)) == words
    assert english_word_count(text) == len(words)


def test_whitespace_tables_hold_every_whitespace_and_line_break():
    assert not any(chr(i).isspace() for i in range(len(english._SPACE), 0x110000))
    assert english._LINE_BREAK.sum() == 10 and (english._LINE_BREAK <= english._SPACE).all()


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["a", "bc", ".", "\ud800", "\u4e2d", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c",
                                 "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u2028", "\u2029", "\u3000", "\u200b"]),
                max_size=30).map("".join))
def test_line_chunk_counts_are_the_chunks_of_each_line(text):
    assert english.line_chunk_counts(text).tolist() == [len(line.split()) for line in text.splitlines()]


def test_threads_sharing_the_store_get_the_words_of_one_thread(shared_data):
    """Beam runs several threads in a worker: they share the store (its lock keeps the growing
    arrays and the compiled passes, which run without the GIL, to one thread at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    with open(shared_data / "text/en-news-scrapinghub.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:120]

    def measures(text):
        words = english_words(text)
        return list(words), words.ids.tolist(), words.char_offsets.tolist(), words.not_all_letters()

    english._chunk_tokens.cache_clear()
    expected = list(map(measures, texts))
    for _ in range(2):
        english._chunk_tokens.cache_clear()
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(measures, texts)) == expected
