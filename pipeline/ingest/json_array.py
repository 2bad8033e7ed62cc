"""A file holding one JSON array of objects (WuDaoCorpora 2.0's layout), or JSON objects one after
another (pretty-printed ones, as `jq` writes them; JSON lines too), to documents, element by element,
without reading the file whole.

An element's bytes run from the end of the previous one (so the `[`, commas and whitespace before it
count with it; the closing `]` or the white space ending the file counts with the last element) and
its offset is where its `{` starts; a UTF-8 byte order mark (Windows tools write one) counts with
the first element. A file that stops being a valid array (or sequence of objects) is an error from
that point to the end of the file (docs=0): unlike JSON lines, there is no line to resume at. An
element holding a byte that is not UTF-8 (`invalid_utf8`, a bad byte between elements is not JSON) is
an error of its own, and so is one over max_record_bytes (`record_too_large`) or nested deeper than
Python's parser recurses (`json_too_deep`), whose end a bracket count finds without keeping it; the
elements after these are read.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Iterator

from pipeline.ingest.events import Broken, Event, NotDocument, end_of_data_errors
from pipeline.ingest.json_text import WHITESPACE, JsonText
from pipeline.ingest.jsonl import FieldMap, object_event
from pipeline.ingest.streams import CHUNK, Decompressed

SEPARATORS = re.compile(r"[ \t\r\n,]*")
# What a streaming bracket count looks at outside strings (inside one: _STRING_REST), and the rest of a
# string up to its closing quote or to the end of what is read (short of a last backslash, whose escape
# is not read yet).
_SYNTAX = re.compile(r'["\[\]{},]')
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*("?)', re.DOTALL)


class JsonArrayReader(JsonText):
    def __init__(self, stream: Decompressed, fields: FieldMap, max_record_bytes: int):
        super().__init__(stream.read)
        self.stream = stream
        self.fields = fields
        self.max_record_bytes = max_record_bytes

    def __iter__(self) -> Iterator[Event]:
        consumed = pending = 0  # bytes of the file turned into events; bytes read since
        last = None  # an element is held back until we know whether the closing ] follows it
        try:
            if self.stream.peek(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:  # counted with the first element
                pending = len(self.stream.read(len(codecs.BOM_UTF8)))
            pending += self.skip(WHITESPACE)
            in_array = self.text.startswith("[", self.at)
            if in_array:
                self.at += 1
                pending += 1
            elif not self.text.startswith("{", self.at):
                raise ValueError(f"expected a JSON array or object, found {self.text[self.at:self.at + 20]!r}")
            while True:
                pending += self.skip(SEPARATORS)
                if in_array and self.text.startswith("]", self.at):
                    self.at += 1
                    pending += 1 + self.skip(WHITESPACE)
                    if self.at < len(self.text):
                        raise ValueError("data after the end of the array")
                    break
                if self.eof:
                    if in_array:
                        raise ValueError("the array is not closed")
                    break
                if last is not None:
                    yield last
                    last = None
                element, size = self._element()
                offset = consumed + pending
                if size > self.max_record_bytes:
                    last = Broken("record_too_large", offset, f"element of {size} bytes is over "
                                  f"ingest.max_record_bytes ({self.max_record_bytes}); skipped unread", pending + size)
                elif isinstance(element, RecursionError):
                    last = Broken("json_too_deep", offset, "element nests arrays/objects deeper than the JSON parser "
                                  "recurses (RecursionError)", pending + size)
                elif isinstance(element, UnicodeDecodeError):
                    last = Broken("invalid_utf8", offset, f"element is not UTF-8: {element}", pending + size)
                else:
                    last = object_event(element, self.fields, offset, pending + size)
                consumed += pending + size
                pending = 0
            if last is not None:
                last.nbytes += pending
                yield last
            elif pending:
                yield NotDocument("empty_array", pending, docs=0)
        except ValueError as e:
            if last is not None:
                yield last
            # every byte read but not yet in an event (decoded or not: the decoder holds a cut character), and the rest
            rest = self.stream.pos - consumed + self._drain()
            yield Broken("invalid_json", consumed, f"not a JSON array or objects from byte {consumed} on: {e}", rest, docs=0)
        yield from end_of_data_errors(self.stream, False, "element")
        while self.stream.resume():  # after damaged compressed data there is no element boundary to resume at
            yield Broken("invalid_json", self.stream.pos, "array data after damaged compressed data", self._drain(), docs=0)
            yield from end_of_data_errors(self.stream, False, "element")

    def _element(self) -> tuple[object, int]:
        """The next element and its size in bytes; reads on while the element is incomplete. An element
        holding a byte that is not UTF-8 comes as its UnicodeDecodeError. An element nesting too deep (a
        RecursionError) or over max_record_bytes (None, when it is not decoded) is skipped with a
        bracket count, so the elements after it are read."""
        try:
            value, end = self.value(self.max_record_bytes)
        except RecursionError as e:
            return e, self._skip_element()
        except json.JSONDecodeError:
            if self.eof:
                raise
            # Over the limit, or not JSON: too large when its brackets close past the limit, else not JSON.
            nbytes = self._skip_element()
            if nbytes <= self.max_record_bytes:
                raise
            return None, nbytes
        return self.utf8_error(end) or value, self.consume(end)

    def _skip_element(self) -> int:
        """Consume the element at `at` by counting brackets (no recursion), chunk by chunk without
        keeping what is read; returns its bytes."""
        depth, in_string, skipped = 0, False, 0
        while True:
            text, pos = self.text, self.at
            while pos < len(text):
                if in_string:
                    m = _STRING_REST.match(text, pos)
                    pos = m.end()
                    if not m.group(1):
                        break  # the string goes on past what is read
                    in_string = False
                    if depth == 0:  # a string element
                        return skipped + self.consume(pos)
                    continue
                m = _SYNTAX.search(text, pos)
                if m is None:
                    pos = len(text)
                    break
                token = m.group()
                if depth == 0 and token in ",]":  # the end of a number or literal element
                    return skipped + self.consume(m.start())
                pos = m.end()
                if token == '"':
                    in_string = True
                elif token != ",":
                    depth += 1 if token in "[{" else -1
                    if depth == 0:
                        return skipped + self.consume(pos)
            skipped += self.consume(pos)
            if self.eof:
                raise ValueError("an element over ingest.max_record_bytes or nested too deep is not closed")
            self.more(CHUNK)

    def _drain(self) -> int:
        n = 0
        while data := self.stream.read(CHUNK):
            n += len(data)
        return n
