"""Strings every reader hands over, made safe to write: one rule for WARC, WET, JSON and Parquet.

- Control characters (C0 except tab, newline and carriage return; DEL) are removed: a NUL byte
  and an escaped `\\u0000` in JSON both come out as nothing, and no later stage has to care.
- A lone surrogate (`"\\ud800"` in JSON parses to one) cannot be written as UTF-8: the record is an
  `invalid_utf8` error, like a JSON line whose bytes are not UTF-8.
"""
from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SURROGATE = re.compile("[\ud800-\udfff]")


class NotUtf8(ValueError):
    """A string holds a lone surrogate."""


def clean(value: str | None, field: str) -> str | None:
    """`value` without control characters; NotUtf8 when it holds a surrogate."""
    if value is None or value.isascii():
        return None if value is None else CONTROL.sub("", value)
    found = SURROGATE.search(value)
    if found:
        raise NotUtf8(f"{field} holds the lone surrogate U+{ord(found.group()):04X} at character {found.start()}, "
                      f"which UTF-8 cannot encode")
    return CONTROL.sub("", value)
