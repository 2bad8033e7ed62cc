"""Hostile pages against super-linear text processing: a page-sized run that a spammer or a broken
page produces must cost time linear in its length. Each case took over 10 s on the code before its
fix (quadratic backtracking or a quadratic loop) and takes milliseconds now; the bound is generous
so that a slow CI machine does not fail it."""
from __future__ import annotations

import time

import pytest

from filters.pii import find_pii

BOUND_S = 1.0


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize("text", [
    "1 QQ" + " " * 100_000 + "x",  # a keyword, then spaces and no number: 66 s before
    "1 微信" + " " * 100_000 + "!",
    "1 user@" + "ab." * 33_000 + "com",  # an address with a 100 kB domain: 28 s before
    "a" * 63 + "@" + "a." * 500_000 + "1",  # a domain that fails, read from each of 64 starts: 3.3 s before
])
def test_pii_is_linear_on_long_runs(text):
    assert seconds(find_pii, text) < BOUND_S


def test_pii_reserved_domains_and_keywords_still_match():
    """The rewritten checks decide as the patterns did (tests/test_pii.py has the full cases)."""
    found = lambda text: [(m.kind, text[m.start:m.end]) for m in find_pii(text)]
    assert found("mail a@b.example.com, c@d.test, e@EXAMPLE.org or f@g.com") == [("email", "f@g.com")]
    assert found("x@example.community") == [("email", "x@example.community")]
    assert found("QQ  ：  123456789 and 微信号 : wxid_abc123") == [("qq", "123456789"), ("wechat", "wxid_abc123")]


def test_email_spans_are_the_one_expressions():
    """Local part and domain matched apart find what `local part + domain` in one expression finds
    (random strings of the characters around an address; tests/test_pii.py has the real cases)."""
    import random
    import re

    from filters.pii import _EMAIL_DOMAIN, _EMAIL_LOCAL, _email_spans

    one_expression = re.compile(_EMAIL_LOCAL.pattern + _EMAIL_DOMAIN.pattern[1:])  # both hold the "@"
    rng = random.Random(5)
    alphabet = ["a", "Z", "1", "-", ".", "@", "_", "%", "+", "\u00e9", "\u0436", "\u00d7", "\u4e2d", " ", "ab.", "a" * 63,
                "b" * 62, "a1." * 5, "c" * 25, "com", "example"]
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert list(_email_spans(s)) == [m.span() for m in one_expression.finditer(s)], s


@pytest.mark.parametrize("chunk", [
    "1" + "(" * 200_000,  # spaCy strips one suffix at a time, searching the whole rest: 20 kB took 63 s
    "1" + ":" * 200_000,
    "a:" * 100_000,  # spaCy's URL expression backtracks over each ":": 100 kB took 34 s
    "http://a.b/" * 20_000,
    "!" * 200_000,  # the affix loop copied the rest of the chunk per mark
    "\U0001F600" * 200_000,
])
def test_english_words_are_linear_on_long_chunks(chunk):
    from filters.english import english_words

    english_words("spaCy loads first.")
    assert seconds(english_words, "Some words first. " + chunk) < BOUND_S


def test_a_chunk_over_the_cap_is_its_pieces_tokens():
    from filters.english import MAX_CHUNK_CHARS, _chunk_tokens, english_words

    pieces = ["(" * MAX_CHUNK_CHARS, "1" + ")" * (MAX_CHUNK_CHARS - 1), "end."]
    assert list(english_words("A " + "".join(pieces))) == ["A", *(w for p in pieces for w in english_words(p))]
    tokenizer = _chunk_tokens().tokenizer  # the linear expressions are in place, not spaCy's own
    assert not hasattr(tokenizer.suffix_search, "__self__") and r"\S+(?::\S*)?@" not in tokenizer.url_match.__self__.pattern


def test_english_tokens_are_spacys_on_affix_heavy_chunks():
    """The replaced suffix search and URL match decide as spaCy's own (random chunks of affixes, URLs)."""
    import random

    import spacy

    from filters.english import _chunk_tokens

    spacy_tokenizer = spacy.blank("en").tokenizer
    rng = random.Random(3)
    alphabet = list(".aA1:/@()[]{}<>!?,;'\"-_#%$°Fkm+s\u2019\u201d\u201c\u2026\u00e9\u4e2d\U0001F600") + [
        "km", "'s", "http://", "www.", ".com", "\u00b0C", "US$", "e.g", "...", "user:pw@"]
    chunks = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3000)}
    store = _chunk_tokens()
    for chunk in chunks:
        assert store[chunk] == tuple(t.text for t in spacy_tokenizer(chunk)), chunk


@pytest.mark.parametrize("text", [
    "x " + " " * 100_000,  # spaces that no word follows: each was searched to the end (40 kB: 11 s before)
    "x" + " " * 100_000 + "\n",
])
def test_copy_noise_is_linear_on_long_space_runs(text):
    from filters.copy_noise import copy_noise

    assert seconds(copy_noise, text) < BOUND_S
    assert copy_noise("a  b" + text) == copy_noise(text) + 1  # a spaced pair of words still counts


def test_language_id_is_fast_on_blank_lines():
    """Empty lines are no pieces of the identification: each was a histogram row and a turn of
    every per-piece and per-line loop (500k of them: seconds). They still take the language of the
    line before them, and each is still a space in its block's text (tests/test_langid.py)."""
    from filters.langid import LanguageIdentifier

    identifier = LanguageIdentifier()
    english, chinese = "An English sentence about the weather today.", "这是一个关于今天天气的中文段落，写得比较长一些。"
    page = "\n" * 3 + english + "\n" * 500_000 + chinese
    identifier.identify(english)  # the model loads first
    assert seconds(lambda: identifier.split(page, identifier.identify(page))) < BOUND_S
    ident = identifier.identify(page)
    assert ident.shares == identifier.identify(english + "\n" + chinese).shares
    assert ident.line_langs[:4] == ["und", "und", "und", "en"] and set(ident.line_langs[4:-1]) == {"en"}
    assert ident.line_langs[-1] == "zh" and sum(ident.line_letters[:-1]) == ident.line_letters[3]
    assert [part for part, _ in identifier.split(page, ident)] == [page[:-len(chinese) - 1], chinese]


@pytest.mark.parametrize("blank", ["\n", " \n", "\u3000\n"])
def test_chinese_paragraph_keys_are_fast_on_blank_lines(blank):
    """A Chinese line is normalized alone: a blank or repeated line now once a page (500k: seconds)."""
    from filters.paragraphs import paragraph_keys, remove_paragraphs

    line = "这是一段足够长的中文段落，用来计算段落的键。"
    page = line + "\n" + blank * 500_000 + line.replace("段落", "段話")
    paragraph_keys(line, "zh", 5)  # the normalization tables load first
    assert seconds(paragraph_keys, page, "zh", 5) < BOUND_S
    keys = paragraph_keys(page, "zh", 5)
    assert keys == paragraph_keys(line + "\n" + line.replace("段落", "段话"), "zh", 5) and len(keys) == 2
    assert remove_paragraphs(page, "zh", {keys[0]}, 5)[0] == page[len(line):].strip("\n")
