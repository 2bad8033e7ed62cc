"""C4's kept lines (`_kept_lines`, texts with citations, phrases, curly brackets or over-long lines
included) are the same lines, counts and rejections as the per-line loop it replaced, which split
every line; the word lists' pre-checks count what their patterns count; hard-wrapped paragraphs are
found as the per-line definition finds them."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from filters import english
from filters.english import _CITATION, _END_PUNCTUATION, C4Quality
from filters.repetition import Doc

SETTINGS = ({}, {"filter_no_terminal_punct": False}, {"min_words_per_line": -1}, {"min_num_sentences": -1},
            {"max_word_length": 6}, {"max_word_length": -1, "filter_no_terminal_punct": False})


def per_line_loop(c4: C4Quality, lines, cite, lorem, javascript, curly, policy, wrapped=None):
    """The loop before the whole-list steps, kept as the definition."""
    wrapped = set(() if wrapped is None else wrapped.tolist())
    kept: list[str] = []
    terminal = non_empty = 0
    for number, stripped in enumerate(lines):
        stripped = stripped.strip()
        line = _CITATION.sub("", stripped) if cite and "[" in stripped else stripped
        ends_sentence = line.endswith(_END_PUNCTUATION) and not line.endswith("...")
        terminal += ends_sentence
        non_empty += bool(line)
        if c4.filter_no_terminal_punct and not ends_sentence:
            continue
        words = stripped.split()
        if len(words) < c4.min_words_per_line and number not in wrapped:
            continue
        if (c4.max_word_length != -1 and len(stripped) > c4.max_word_length
                and max(map(len, words), default=0) > c4.max_word_length):
            continue
        if lorem or javascript or policy:
            lower = line.lower()
            if lorem and "lorem ipsum" in lower:
                return c4.reject("lorem_ipsum", "lorem ipsum")
            if javascript and "javascript" in lower:
                continue
        if curly and "{" in line:
            return c4.reject("curly_bracket", "{")
        if policy and any(p in lower for p in policy):
            continue
        kept.append(line)
    sentences, n_words = english._chunk_tokens().sentences_and_words("\n".join(kept))
    return kept, sentences if c4.min_num_sentences != -1 else 0, n_words, terminal, non_empty


def assert_same(c4: C4Quality, text: str, words=None) -> None:
    lines = text.splitlines()
    counts = english.line_chunk_counts(text)
    lower = _CITATION.sub("", text).lower()
    flag_sets = [(cite, "lorem ipsum" in lower, "javascript" in lower, "{" in text,
                  [p for p in english._POLICY_PHRASES if p in lower])
                 for cite in (False, True)]
    for flags in flag_sets:
        for wrapped in (None, np.arange(0, len(lines), 2)):
            long_lines = c4.max_word_length != -1 and max(map(len, lines), default=0) > c4.max_word_length
            new = c4._kept_lines(list(map(str.strip, lines)), counts, text, words, wrapped, *flags, long_lines)
            old = per_line_loop(c4, lines, *flags, wrapped)
            assert new == old, (c4, flags, text)


def test_kept_lines_equal_the_per_line_loop_on_generated_texts():
    rng = random.Random(19)
    pieces = ["word", "Hello.", "end!", "a", "...", "x?", '"q"', " ", "\t", "", "Mr.", "U.S.", "[1]", "[edit]",
              "[citation needed]", "[2].", "see[3]", "[x]", "lorem ipsum", "Lorem Ipsum.", "JavaScript", "{", "a{b}.",
              "privacy policy.", "uses cookies", "Terms of use", "supercalifragilistic", "longwordhere.", "\u2014",
              "e.g.", "Yes!\u201d"]
    texts = ["\n".join(" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(0, 7)))
             for _ in range(600)]
    for settings in SETTINGS:
        c4 = C4Quality(**settings)
        for text in texts:
            assert_same(c4, text)
            assert_same(c4, text, english.english_words(text))


def test_kept_lines_equal_the_per_line_loop_on_real_texts(shared_data):
    data = shared_data
    texts = []
    for path in sorted((data / "text").glob("en-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f][:100]
    assert texts
    for settings in SETTINGS[:3]:
        c4 = C4Quality(**settings)
        for text in texts:
            assert_same(c4, text, english.english_words(text))


@pytest.mark.parametrize("settings", [{}, {"filter_no_terminal_punct": False, "min_num_sentences_prose": 3,
                                           "join_hard_wrapped_lines": True}])
def test_judge_rewrites_and_rejects_as_before(settings):
    """The whole rule set on texts that take the line-by-line path: same rejection, signals and
    rewritten text as with the per-line loop swapped in."""
    rng = random.Random(3)
    sentences = ["The cat sat on the mat[1].", "It was a sunny day in the park.", "Read the privacy policy here.",
                 "Enable JavaScript to view this page.", "We asked them why [citation needed] and left.",
                 "Short line", "x = {a: 1}.", "They said lorem ipsum dolor sit amet.", "Another plain sentence here."]
    texts = ["\n".join(rng.choice(sentences) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    new, old = C4Quality(**settings), C4Quality(**settings)
    old._kept_lines = lambda lines, counts, text, words, wrapped, *flags: per_line_loop(old, lines, *flags[:5], wrapped)
    for text in texts:
        results = []
        for c4 in (new, old):
            doc, signals = Doc(text, english.english_words, None, english.english_word_count), {}
            results.append((c4.judge(doc, signals), signals, doc.text))
        assert results[0] == results[1], text


def test_word_lists_with_latin_and_cjk_entries_count_what_the_pattern_counts():
    """The pre-check looks for Latin entries only where a word begins (the pattern matches them
    nowhere else) and for the other entries everywhere: the count stays the pattern's, and the
    position found is the first word-start or CJK occurrence."""
    from filters.blocklist import WordMatcher, _Literals

    entries = ["sex", "porn", "ki", "xxx", "成人视频", "裸聊", "yabo手机", "re:(?:赌场|彩票)app"]
    matcher = WordMatcher(entries)
    rng = random.Random(5)
    pieces = ["sex", "Sex", "essex", "sexy", "porn", "PORN", "ki", "kiss", "Kı", "ſex", "xxxx", "xxx", "成人视频", "人视频",
              "a成人视频", "裸聊", "x裸聊", "yabo手机", "ayabo手机", "赌场app", "彩票APP", "k", " ", "-", "9", "\u212aI", "é"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        assert matcher.count(text) == sum(1 for _ in matcher.pattern.finditer(text)), text
    literals = _Literals(["sex", "ki", "成人"], inside=["成人"])
    assert literals.first_at("essex sex") == 6
    assert literals.first_at("a成人 ki") == 1
    assert literals.first_at("Kıx") == 0 and literals.first_at("aKıx ki") == 5
    assert literals.first_at("akı") == -1


def test_soft_word_runs_pass_the_hash_bit_table():
    """Every listed word's hash is in the bit table the run look-up checks before its binary search."""
    from filters.blocklist import _key_bit, _TokenSet

    words = [f"w{i}" for i in range(500)] + ["ass", "sex", "nude"]
    tokens = _TokenSet(words)
    assert tokens.hash_bits[_key_bit(tokens.hashes)].all()
    text = " ".join(words) + " assx xsex nude9 NUDE Sex"
    assert tokens.count(text) == len(words) + 2


def wrapped_runs_per_line(lines):
    """hard_wrapped_runs as a loop over the lines, kept as the definition."""
    stripped = [line.strip() for line in lines]
    if len(stripped) < 3:
        return None
    column = sorted(map(len, stripped))[int(0.9 * (len(stripped) - 1))]
    if not english.WRAP_COLUMNS[0] <= column <= english.WRAP_COLUMNS[1]:
        return None
    wrapped = [english.WRAPPED_WIDTH * column <= len(line) <= 1.2 * column
               and line[-1] not in english.TERMINAL_PUNCTUATION for line in stripped[:-1]] + [False]
    lower = sum(nxt[0].islower() for line_wraps, nxt in zip(wrapped, stripped[1:]) if line_wraps)
    if sum(wrapped) < english.WRAPPED_LINE_SHARE * len(stripped) or lower < english.LOWER_CONTINUATION_SHARE * sum(wrapped):
        return None
    runs, run = [], 0
    for line_wraps in wrapped:
        runs.append(run)
        run += not line_wraps
    return runs


def assert_same_wrapping(text: str) -> None:
    lines = [line for line in text.split("\n") if line.strip()]
    runs, expected = english.hard_wrapped_runs([line.strip() for line in lines]), wrapped_runs_per_line(lines)
    assert (runs is None and expected is None) or runs.tolist() == expected, text
    paragraphs = lines if expected is None else [
        " ".join(line.strip() for line, run in zip(lines, expected) if run == number) for number in range(expected[-1] + 1)]
    assert english.join_hard_wrapped(lines) == paragraphs, text
    c4, all_lines = C4Quality(min_words_per_line=7), text.splitlines()
    long_lines = c4._long_wrapped_lines(list(map(str.strip, all_lines)), english.line_chunk_counts(text))
    numbers = [i for i, line in enumerate(all_lines) if line.strip()]
    runs = wrapped_runs_per_line([all_lines[i] for i in numbers])
    words = {}
    for i, run in zip(numbers, runs or []):
        words[run] = words.get(run, 0) + len(all_lines[i].split())
    expected_long = None if runs is None else [i for i, run in zip(numbers, runs) if words[run] >= 7]
    assert (long_lines is None and expected_long is None) or long_lines.tolist() == expected_long, text


def test_hard_wrapped_runs_equal_the_per_line_definition_on_generated_texts():
    import textwrap
    rng = random.Random(7)
    words = ["the", "river", "Ran", "on.", "quietly,", "and", "Emma", "said", "so!", "x", "\u00e9t\u00e9", "\u4e2d\u6587",
             "(aside)", "well?", "a" * 30]
    texts = []
    for _ in range(400):
        width = rng.choice([30, 45, 60, 70, 80, 110])
        paragraphs = [textwrap.fill(" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))), width)
                      for _ in range(rng.randint(1, 6))]
        texts.append(rng.choice(["\n", "\n\n", "\n \n"]).join(paragraphs))
    assert sum(wrapped_runs_per_line([t for t in text.split("\n") if t.strip()]) is not None for text in texts) > 50
    for text in texts:
        assert_same_wrapping(text)


def test_hard_wrapped_runs_equal_the_per_line_definition_on_real_texts(shared_data):
    texts = []
    for path in sorted((shared_data / "text").glob("en-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    assert sum(wrapped_runs_per_line([t for t in text.split("\n") if t.strip()]) is not None for text in texts) >= 3
    for text in texts:
        assert_same_wrapping(text)
