"""Language ID of pages of many short lines: bounded memory, and the same output as the dense path."""
from __future__ import annotations

import tracemalloc

import pytest

from filters.langid import LanguageIdentifier


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def _fields(ident):
    return (ident.lang, ident.score, ident.shares, ident.script, ident.line_langs, ident.line_scores,
            ident.line_letters, ident.variant, ident.japanese_korean_lines())


def test_a_page_of_one_letter_lines_takes_no_histogram_row_per_line(identifier):
    # The dense path holds a 1 kB histogram row a line and more (20k lines: 53 MB traced); the
    # many-lines path a few arrays of the page's characters and lists of its lines (4 MB).
    text = "a\n" * 20_000
    identifier.identify("warm up the model and the script tables")
    tracemalloc.start()
    try:
        ident = identifier.identify(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ident.lang == "en" and len(ident.line_langs) == 20_001
    assert peak < 12e6, f"{peak / 1e6:.0f} MB traced"


PAGES = [
    "a\nб\n中\n" * 7 + "\n\n  \n1\n",
    "The cat sat on the mat and looked at the dog.\n\n\n中文句子在这里，我们一起学习语言识别。\n" * 5,
    # a line cut into a CJK and a Latin piece, between short lines and empty ones
    "x\n" * 3 + "这是一个很长的中文句子，用来测试混合行的切分是否正确完成。" + " English words follow here in a long clause" * 2 + "\n\ny\n",
    "ひらがなとカタカナ\n漢字だけの見出し\n한국어 문장입니다\n中文\n" * 4 + "\n".join("abc" for _ in range(30)),
    "\n\n" + "Привет мир\n \n" * 12 + "\n",
    "",
    "no newline at all",
]


@pytest.mark.parametrize("settings", [{}, dict(max_block_letters=20, min_block_letters=2, predict_chars=30,
                                               mixed_run_bytes=6, variant_sample_chars=10, cjk_line_letters=3)])
def test_the_many_lines_path_gives_the_dense_paths_output(settings):
    dense, many = LanguageIdentifier(**settings), LanguageIdentifier(dense_max_lines=0, **settings)
    many._CHUNK_LINES = 2  # chunk edges inside every page
    for text in PAGES:
        a, b = dense.identify(text), many.identify(text)
        assert _fields(a) == _fields(b), text[:80]
        assert [(t, _fields(p)) for t, p in dense.split(text, a)] == [(t, _fields(p)) for t, p in many.split(text, b)]


def test_pages_up_to_the_threshold_take_the_dense_path(identifier, monkeypatch):
    def fail(*args):
        raise AssertionError("many-lines path taken")

    monkeypatch.setattr(LanguageIdentifier, "_many_line_blocks", fail)
    identifier.identify("a line\n" * identifier.dense_max_lines)
    with pytest.raises(AssertionError, match="many-lines path"):
        identifier.identify("a line\n" * identifier.dense_max_lines + "one more")
