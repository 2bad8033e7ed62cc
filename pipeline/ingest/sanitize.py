"""Strings every reader hands over, made safe to write: one rule for WARC, WET, JSON and Parquet.

- Control characters (C0 except tab, newline and carriage return; DEL) are removed: a NUL byte
  and an escaped `\\u0000` in JSON both come out as nothing, and no later stage has to care.
- A lone surrogate (`"\\ud800"` in JSON parses to one) cannot be written as UTF-8: the record is an
  `invalid_utf8` error, like a JSON line whose bytes are not UTF-8.

Both are checked on the UTF-8 encoding, in C: encoding finds surrogates, and the control
characters are single bytes that never occur inside a multi-byte sequence, so bytes.translate can
delete them (bench/hostile.py: about 3x the speed of regular expressions over the text).
"""
from __future__ import annotations

CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


class NotUtf8(ValueError):
    """A string holds a lone surrogate."""


def clean(value: str | None, field: str) -> str | None:
    """`value` without control characters; NotUtf8 when it holds a surrogate."""
    if value is None:
        return None
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NotUtf8(f"{field} holds the lone surrogate U+{ord(value[e.start]):04X} at character {e.start}, "
                      f"which UTF-8 cannot encode") from None
    kept = data.translate(None, CONTROL_BYTES)
    return value if len(kept) == len(data) else kept.decode("utf-8")
