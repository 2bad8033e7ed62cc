"""The compiled passes of the shipped Chinese chain against the expressions they replace:
`filters.chinese.text_counts` (lines, sentence lines, Han share, digit runs, pinyin notes, code
lines) and the word lists' in-pass lower-casing (`filters.blocklist._lowered`)."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.blocklist import _Literals, _TokenSet
from filters.chinese import _CODE_LINE_START, _PINYIN_NOTE, LongDigitRuns, text_counts
from filters.english import TERMINAL_PUNCTUATION
from filters.scripts import han_ratio

# whitespace str.strip removes (\x1c, \x85, \u3000 too), terminal marks (one outside the BMP),
# ASCII and full-width digits, pinyin and its brackets, the first characters of code lines
PIECES = ["\n", " ", "\t", "\r", "\x1c", "\x85", "\u3000", "。", "!", ".", "？", "\U00011047", "”", "(张 哲)",
          "1234567890", "\uff10\uff19", "2021010", "烟(yan)", "台（tái2）", "中(abcdefg)", "(x)", "汉字", "ü",
          "def f", "import x", "  return;", "{", "}", "// c", "#include", "ifdcprvlw", "A", "中文段落没有标点"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_text_counts_equal_the_expressions_they_replace(text):
    counts = text_counts(text)
    lines = [line for line in text.split("\n") if line.strip()]
    assert counts.lines == len(lines)
    assert counts.line_chars == sum(map(len, lines))
    assert counts.sentence_lines == sum(not TERMINAL_PUNCTUATION.isdisjoint(line.rstrip()[-10:]) for line in lines)
    assert counts.code_start_lines == sum(line.lstrip()[:1] in set("{}/*#ifdcprvlw") for line in lines)
    assert counts.code_start_lines >= sum(1 for line in lines if _CODE_LINE_START.match(line))  # a pre-check
    assert counts.code_end_chars == any(c in text for c in ";{}")
    assert counts.pinyin_notes == len(_PINYIN_NOTE.findall(text))
    assert (counts.han / counts.visible if counts.visible else 0.0) == han_ratio(text)
    runs = [len(m) for m in re.findall("[0-9\uff10-\uff19]+", text)]
    assert counts.digit_run_chars.tolist() == [sum(r for r in runs if r >= k) for k in range(65)]


def test_digit_runs_of_the_longest_counted_length_and_more():
    text = "1" * 64 + "x" + "2" * 100 + "x" + "3" * 63
    assert text_counts(text).digit_run_chars[64] == 164
    assert text_counts(text).digit_run_chars[63] == 227
    with pytest.raises(ValueError, match="min_run_length"):
        LongDigitRuns(min_run_length=65)


def _folded_lower(text: str) -> str:
    """The lower-cased copy the word lists searched before `_lowered`: re's four IGNORECASE extras
    folded to ASCII, then `str.lower`."""
    return text.translate(str.maketrans(dict(zip("\u0130\u0131\u017f\u212a", "iisk")))).lower()


ENTRIES = ["sex cams", "kink", "ki", "casino", "网上赌场", "裸", "xx"]
CASED = list("aksixnSIKXN \u0130\u0131\u017f\u212a\u03a3\u03c3\u00e9\u00c9\uff21\uff41\u1e9e") + ["Σ.", "ΑΣ ", "网上", "赌场", "裸"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(ENTRIES + [e.upper() for e in ENTRIES] + CASED), max_size=12).map("".join))
def test_lowering_in_the_pass_finds_what_the_lower_cased_copy_finds(text):
    lowered = _folded_lower(text)
    assert _Literals(ENTRIES).first_at(text) == min((lowered.find(e) for e in ENTRIES if e in lowered), default=-1)
    words = {"sex", "xx", "ki", "kink"}
    assert _TokenSet(words).count(text) == sum(map(words.__contains__, re.findall("[a-z0-9]+", lowered))), text
