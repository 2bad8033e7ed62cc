"""filters.copy_noise: the fast defect count equals its regex (`_DEFECT`) on every text."""
from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from filters.copy_noise import _DEFECT, copy_noise, defects


def test_defects_equal_the_regex_on_shared_data(shared_data):
    texts = []
    for path in sorted([*(shared_data / "text").glob("*.jsonl"), *(shared_data / "jsonl").glob("*.jsonl*")]):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
            texts += [r.get("text") or r.get("raw_content") or "" for r in map(json.loads, f)]
    assert len(texts) > 2_500
    counted = [defects(t) for t in texts]
    assert counted == [len(_DEFECT.findall(t)) for t in texts]
    assert sum(counted) > 10_000  # the texts hold defects of every kind the regex counts


# Whitespace of every kind next to words, Han characters and punctuation: where the regex's
# lookbehinds and lookaheads decide.
_TEXT = st.lists(st.sampled_from([" ", "  ", "\t", "\n", "\r", "\u3000", "\u00a0", "\x0b", "a", "word", ".", ",",
                                  "中", "国", "，", ";", "(", "!", "é"]), max_size=60).map("".join)


@settings(max_examples=500, deadline=None)
@given(_TEXT)
def test_defects_equal_the_regex_on_any_text(text):
    for t in (text, text.replace("中", "c").replace("国", "g"), f"x{text}y"):
        assert defects(t) == len(_DEFECT.findall(t)), repr(t)


def test_copy_noise_counts_lines_and_defects():
    original = "A first sentence.\nA second one!"
    padded = "Home | News\nA first sentence.\nA second one!\nShare this\nHome | News"
    assert copy_noise(original) == 0
    assert copy_noise(padded) == 3  # two lines end no sentence, one repeats
    assert copy_noise("Two  spaces here.\nA tab\there. \n中国, 北京。") == 4
