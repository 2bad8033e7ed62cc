"""Text decoded from a byte stream as a JSON reader needs it, for the JSON-values reader (json_array.py)
and the JSON lines reader's look at a file's first value (jsonl.py): one geometric read of a long value,
one way to count a value's bytes, one rule for a byte that is not UTF-8."""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, Callable

from pipeline.ingest.streams import CHUNK

WHITESPACE = re.compile(r"[ \t\r\n]*")
# A byte that is not UTF-8, decoded as a lone surrogate escape (surrogateescape); a `\udcff` escape in
# the JSON is six ASCII characters, so it is not one of these
_BAD_BYTE = re.compile("[\udc80-\udcff]")
# The decoder reports a value cut short by the end of the text at the start of the token it cuts (a
# string: "Unterminated string"); the longest other token is -Infinity
_LONGEST_TOKEN = len("-Infinity")


def cut_short(error: json.JSONDecodeError) -> bool:
    """Whether the decoder failed only because its text ended (more of it might decode)."""
    return error.pos > len(error.doc) - _LONGEST_TOKEN or error.msg.startswith("Unterminated string")


class JsonText:
    """The text decoded from `read(n)` (b"" at the end), read as it is needed and consumed from `at`.
    A byte that is not UTF-8 decodes to a lone surrogate, so that it costs the value holding it
    (`utf8_error`), not the rest of the text; values are searched for them only from the first such
    byte on (searching every value took 0.17 s of the 0.6-1 s a 41 MB array of Chinese text reads in)."""

    def __init__(self, read: Callable[[int], bytes]):
        self.read = read
        self.decoder = codecs.getincrementaldecoder("utf-8")()  # strict until a byte is not UTF-8 (`more`)
        # Decoded text and where its unconsumed part starts: moving `at` instead of slicing the text
        # keeps each value's cost to its own size, not the size of what is read.
        self.text, self.at = "", 0
        self.eof = False

    def more(self, size: int) -> None:
        data = self.read(size)
        self.eof = not data
        try:
            decoded = self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError:  # the decoder keeps its state; from here on, values are checked
            self.decoder.errors = "surrogateescape"
            decoded = self.decoder.decode(data, final=self.eof)
        self.text = self.text[self.at:] + decoded
        self.at = 0

    def skip(self, chars: re.Pattern[str]) -> int:
        """Consume the leading run of `chars` (one byte each); returns the bytes consumed."""
        skipped = 0
        while True:
            end = chars.match(self.text, self.at).end()
            skipped += end - self.at
            self.at = end
            if self.at < len(self.text) or self.eof:
                return skipped
            self.more(CHUNK)

    def value(self, limit: int) -> tuple[Any, int]:
        """The JSON value at `at` and where it ends (not consumed). While it is cut short by the end of
        what is read and `limit` characters are not read yet, reads on in reads that double (a long
        value is re-parsed a few times, not once per chunk). Raises JSONDecodeError (not JSON, or not
        whole within the limit: `cut_short` tells) and RecursionError (nested too deep)."""
        decoder, size = json.JSONDecoder(strict=False), CHUNK  # raw control characters: as for JSON lines
        while True:
            try:
                return decoder.raw_decode(self.text, self.at)
            except json.JSONDecodeError as e:
                if self.eof or not cut_short(e) or len(self.text) - self.at > limit:
                    raise
                self.more(size)
                size *= 2

    def utf8_error(self, end: int) -> UnicodeDecodeError | None:
        """The error decoding the bytes from `at` to `end` as UTF-8 raises (it names the first bad byte
        and its position in them), None when they are UTF-8."""
        if self.decoder.errors == "surrogateescape" and _BAD_BYTE.search(self.text, self.at, end):
            try:
                self.text[self.at:end].encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeDecodeError as e:
                return e
        return None

    def consume(self, end: int) -> int:
        """Move `at` to `end`; returns the bytes passed."""
        nbytes = len(self.text[self.at:end].encode("utf-8", "surrogateescape"))
        self.at = end
        return nbytes
