"""A file holding one JSON array of objects (WuDaoCorpora 2.0's layout) to documents, element by
element, without reading the file whole.

An element's bytes run from the end of the previous one (so the `[`, commas and whitespace before
it count with it; the closing `]` counts with the last element) and its offset is where its `{`
starts. A file that stops being a valid array is an error from that point to the end of the file
(docs=0): unlike JSON lines, there is no line to resume at. An element nested deeper than Python's
parser recurses is an error of its own (`json_too_deep`): a bracket count finds where it ends, and
the elements after it are read.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Iterator

from pipeline.ingest.events import Broken, Event, NotDocument, end_of_data_errors
from pipeline.ingest.jsonl import FieldMap, object_event
from pipeline.ingest.streams import CHUNK, Decompressed

WHITESPACE = " \t\r\n"
# What a bracket count looks at: whole strings (brackets inside them do not count), brackets, and a
# quote whose string is not complete yet.
_BRACKET_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]|"')


class ElementTooLarge(ValueError):
    pass


class JsonArrayReader:
    def __init__(self, stream: Decompressed, fields: FieldMap, max_record_bytes: int):
        self.stream = stream
        self.fields = fields
        self.max_record_bytes = max_record_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""  # decoded, not yet consumed
        self.eof = False

    def _more(self, size: int) -> None:
        data = self.stream.read(size)
        self.eof = not data
        self.text += self.decoder.decode(data, final=self.eof)

    def _skip(self, chars: str) -> int:
        """Consume leading `chars`; returns the bytes consumed."""
        while True:
            stripped = self.text.lstrip(chars)
            n = len(self.text) - len(stripped)
            self.text = stripped
            if self.text or self.eof:
                return n
            self._more(CHUNK)

    def __iter__(self) -> Iterator[Event]:
        consumed = pending = 0  # bytes of the file turned into events; bytes read since
        last = None  # an element is held back until we know whether the closing ] follows it
        try:
            pending = self._skip(WHITESPACE)
            if not self.text.startswith("["):
                raise ValueError(f"expected a JSON array, found {self.text[:20]!r}")
            self.text = self.text[1:]
            pending += 1
            last = None
            while True:
                pending += self._skip(WHITESPACE + ",")
                if self.text.startswith("]"):
                    self.text = self.text[1:]
                    pending += 1 + self._skip(WHITESPACE)
                    if self.text:
                        raise ValueError("data after the end of the array")
                    break
                if self.eof:
                    raise ValueError("the array is not closed")
                if last is not None:
                    yield last
                    last = None
                element, size = self._element()
                if isinstance(element, RecursionError):
                    last = Broken("json_too_deep", consumed + pending, "element nests arrays/objects deeper than the "
                                  "JSON parser recurses (RecursionError)", pending + size)
                else:
                    last = object_event(element, self.fields, consumed + pending, pending + size)
                consumed += pending + size
                pending = 0
            if last is not None:
                last.nbytes += pending
                yield last
            elif pending:
                yield NotDocument("empty_array", pending, docs=0)
        except (ValueError, UnicodeDecodeError) as e:
            if last is not None:
                yield last
            reason = "record_too_large" if isinstance(e, ElementTooLarge) else "invalid_json"
            # every byte read but not yet in an event (decoded or not: a failed decode keeps none), and the rest
            rest = self.stream.pos - consumed + self._drain()
            yield Broken(reason, consumed, f"not a JSON array of objects from byte {consumed} on: {e}", rest, docs=0)
        yield from end_of_data_errors(self.stream, False, "element")
        while self.stream.resume():  # after damaged compressed data there is no element boundary to resume at
            yield Broken("invalid_json", self.stream.pos, "array data after damaged compressed data", self._drain(), docs=0)
            yield from end_of_data_errors(self.stream, False, "element")

    def _element(self) -> tuple[object, int]:
        """The next element (a RecursionError when it nests too deep) and its size in bytes; reads
        on while the element is incomplete."""
        decoder, size = json.JSONDecoder(), CHUNK
        while True:
            try:
                value, end = decoder.raw_decode(self.text)
            except RecursionError as e:
                value, end = e, self._nested_end()
            except json.JSONDecodeError:
                if len(self.text) > self.max_record_bytes:
                    raise ElementTooLarge(f"an element is over ingest.max_record_bytes ({self.max_record_bytes})") from None
                if self.eof:
                    raise
                self._more(size)
                size *= 2  # geometric reads: a long element is re-parsed a few times, not once per chunk
                continue
            nbytes = len(self.text[:end].encode("utf-8"))
            self.text = self.text[end:]
            return value, nbytes

    def _nested_end(self) -> int:
        """Where the array or object at the start of `self.text` ends, by counting brackets (no
        recursion); reads on while it is incomplete, up to max_record_bytes."""
        depth, pos = 0, 0
        while True:
            for m in _BRACKET_TOKEN.finditer(self.text, pos):
                token = m.group()
                if token == '"':  # a string that goes on past what is read
                    break
                if token[0] != '"':
                    depth += 1 if token in "[{" else -1
                    if depth == 0:
                        return m.end()
                pos = m.end()
            if len(self.text) > self.max_record_bytes:
                raise ElementTooLarge(f"an element is over ingest.max_record_bytes ({self.max_record_bytes})")
            if self.eof:
                raise ValueError("a deeply nested element is not closed")
            self._more(CHUNK)

    def _drain(self) -> int:
        n = 0
        while data := self.stream.read(CHUNK):
            n += len(data)
        return n
