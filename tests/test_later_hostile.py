"""Hostile documents in the stages after the mix (tokenizer training, encode, shards, report): one
document of megabytes with no space or of characters that fall back to bytes must cost time linear in
its size. Each timed case took seconds on the code before its fix; the bound is generous so that a
slow CI machine does not fail it."""
from __future__ import annotations

import time

from tokenizer.train import split_long_line

BOUND_S = 1.0
FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467"  # an emoji ZWJ sequence, 18 UTF-8 bytes


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_a_long_training_line_is_cut_in_linear_time():
    line = FAMILY * (8_000_000 // len(FAMILY.encode()))  # 8 MB, no break character: 3.5 s before
    assert _seconds(split_long_line, line, 8192) < BOUND_S
    pieces = split_long_line(line, 8192)
    assert "".join(pieces) == line and max(len(p.encode()) for p in pieces) <= 8192
