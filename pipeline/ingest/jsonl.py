"""JSON lines (plain, .gz, .zst) to documents, one line at a time.

Field names are configurable (dotted paths reach into nested objects, e.g. `metadata.url`), with
presets for the common dump layouts:

  dolma   {"id", "text", "created", "metadata": {"url", "title"}}      (allenai/dolma)
  ccnet   {"digest", "raw_content", "url", "date_download", "title"}  (facebookresearch/cc_net, ChineseWebText)
  wudao   {"uniqueKey", "title", "content"}                           (WuDaoCorpora 2.0: JSON arrays, json_array.py)

The title field (`title` unless a preset or `title_field` says otherwise) is kept when it holds a
string and is null otherwise: quality's title rule reads it (crawl dumps put a page's site name
and injected advertising there). A subset field (none unless `subset_field` names one, e.g. the
Pile's `meta.pile_set_name`) names the record's part of a dump that mixes several (`subset_name`).

A line ends in `\n` (`\r\n` included), or in a lone `\r` in a file whose first max_record_bytes hold
a `\r` and no `\n` (classic Mac OS), unless each such `\r` is inside a first JSON value running past
them (a raw `\r` in a string of a line over max_record_bytes). A file whose first object runs past
its first line that is not blank is pretty-printed JSON, not JSON lines (`first_record_spans_lines`):
read line by line, each of its lines would be an error, so it is read as JSON values one after
another (json_array.py).
A line's bytes include its newline, and the first line's a UTF-8 byte order mark before it (Windows
tools write one). Blank lines are not documents (counted under `blank_line` with docs=0); a line that
is not UTF-8, not JSON, not an object, or has no text string is an error with docs=1, and so is a line
nested deeper than Python's parser recurses (`json_too_deep`).
"""
from __future__ import annotations

import codecs
import json
import re
from dataclasses import astuple, dataclass
from typing import Any, Iterator, NamedTuple

from pipeline.ingest.events import (Broken, Document, Empty, Event, NotDocument, end_of_data_errors,
                                    end_of_data_reason)
from pipeline.ingest.json_text import JsonText, cut_short
from pipeline.ingest.streams import CHUNK, Decompressed


@dataclass(frozen=True)
class FieldMap:
    text: str = "text"
    id: str | None = "id"
    url: str | None = "url"
    date: str | None = None
    title: str | None = "title"
    subset: str | None = None

    def top_level_names(self) -> set[str]:
        """The top-level fields (columns) the mapped paths start at."""
        return {path.split(".")[0] for path in astuple(self) if path}


MAX_SUBSET_CHARS = 100
# What may come before a file's first object: a byte order mark, white space (blank lines), the `[`
# opening an array; the empty group marks the file's first character that is not white space
_BEFORE_FIRST_OBJECT = re.compile(r"\ufeff?[ \t\r\n]*(?P<first_line>)(?:\[[ \t\r\n]*)?")


def subset_name(value: Any) -> str | None:
    """A record's subset as a source name part: a string or an integer, its whitespace runs made one
    space (a tab or newline would split the report's source keys), at most MAX_SUBSET_CHARS; None for
    anything else (missing, empty, an object)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return " ".join(str(value).split())[:MAX_SUBSET_CHARS] or None


PRESETS = {
    "dolma": FieldMap(text="text", id="id", url="metadata.url", date="created", title="metadata.title"),
    "ccnet": FieldMap(text="raw_content", id="digest", url="url", date="date_download", title="title"),
    "wudao": FieldMap(text="content", id="uniqueKey", url=None, date=None, title="title"),
}


def lookup(obj: dict, dotted: str | None) -> Any:
    if not dotted:
        return None
    value: Any = obj
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def object_event(obj: Any, fields: FieldMap, offset: int, nbytes: int | None) -> Event:
    """The event for one decoded record; nbytes None: count the text's UTF-8 bytes (Parquet)."""
    if not isinstance(obj, dict):
        return Broken("invalid_json", offset, f"expected a JSON object, got {type(obj).__name__}", nbytes or 0)
    text = lookup(obj, fields.text)
    if not isinstance(text, str):  # what was found tells a wrong text_field from a dump's stray values
        found = "nothing (missing or null)" if text is None else type(text).__name__
        return Broken("missing_text", offset, f"field {fields.text!r}: expected a string, found {found} "
                      f"(keys: {', '.join(sorted(obj)[:20])})", nbytes or 0)
    if nbytes is None:
        nbytes = len(text.encode("utf-8"))
    doc_id = _as_str(lookup(obj, fields.id))
    url, date = _as_str(lookup(obj, fields.url)), _as_str(lookup(obj, fields.date))
    title = lookup(obj, fields.title)
    title = title if isinstance(title, str) else None  # a number or an object is no title
    subset = subset_name(lookup(obj, fields.subset))
    if not text.strip():
        return Empty(doc_id, url, offset, date, nbytes, f"field {fields.text!r} is empty", title, subset)
    return Document(doc_id, text, url, offset, date, nbytes, title, subset)


class _Lookahead:
    """A read(n) over the next `limit` bytes of a stream that leaves them unread."""

    def __init__(self, stream: Decompressed, limit: int):
        self.stream, self.limit, self.pos = stream, limit, 0

    def __call__(self, n: int) -> bytes:
        data = self.stream.peek(min(self.pos + n, self.limit))[self.pos:]
        self.pos += len(data)
        return data


class FirstValue(NamedTuple):
    blank: str  # the byte order mark and blank lines before it
    lead: str  # from the first line that is not blank to the value: an array's `[` and white space
    value: Any  # None when it is not JSON
    text: str | None  # the value's text; None when it is cut short by the end of the head


def first_value(stream: Decompressed, limit: int) -> FirstValue:
    """The first JSON value of the stream's next `limit` bytes (its head), leaving them unread."""
    head = JsonText(_Lookahead(stream, limit))
    head.more(CHUNK)
    while (before := _BEFORE_FIRST_OBJECT.match(head.text)).end() == len(head.text) and not head.eof:
        head.more(len(head.text))  # more white space: nothing is consumed, so the text grows
    head.at = before.end()
    blank, lead = head.text[:before.start("first_line")], head.text[before.start("first_line"):head.at]
    try:
        value, end = head.value(limit)
    except json.JSONDecodeError as e:
        return FirstValue(blank, lead, None, None if head.eof and cut_short(e) else "")
    except RecursionError:
        return FirstValue(blank, lead, None, "")
    return FirstValue(blank, lead, value, head.text[head.at:end])


class JsonlReader:
    def __init__(self, stream: Decompressed, fields: FieldMap, max_record_bytes: int):
        self.stream = stream
        self.fields = fields
        self.max_record_bytes = max_record_bytes
        first = first_value(stream, max_record_bytes + 1)
        newline = stream.line_ending(max_record_bytes + 1)
        if newline == b"\r" and first.text is None and "\r" not in first.blank:
            newline = b"\n"  # each \r is in a first value running past them: raw in a line too long, no line end
        self.newline = newline
        # whole lines of white space (what bytes.strip() removes), each within max_record_bytes as the
        # window `skip_matching` searches is
        self.blank_lines = re.compile(rb"(?:[ \t\n\r\v\f]*" + re.escape(newline) + rb")?")
        # pretty-printed: the first object (after the `[` of an array) is whole, within max_record_bytes,
        # only past the end of the first line that is not blank (blank lines before it are JSON lines' own)
        self.first_record_spans_lines = isinstance(first.value, dict) and newline.decode() in first.lead + first.text

    def __iter__(self) -> Iterator[Event]:
        while True:
            self.cut_reported = False
            yield from self._lines()
            yield from end_of_data_errors(self.stream, self.cut_reported, "line")
            if not self.stream.resume():
                return

    def _lines(self) -> Iterator[Event]:
        stream, fields = self.stream, self.fields
        while not stream.at_end():
            offset = stream.pos
            line = stream.readline(self.max_record_bytes + 1, self.newline)
            if len(line) > self.max_record_bytes:
                # a line of exactly max + 1 bytes came whole: its newline is read, the next line is not its rest
                nbytes = len(line) + (0 if line.endswith(self.newline) else stream.skip_line_rest(self.newline))
                yield Broken("record_too_large", offset, f"line of {nbytes} bytes is over "
                             f"ingest.max_record_bytes ({self.max_record_bytes}); skipped unread", nbytes)
                continue
            nbytes = len(line)
            if not offset and line.startswith(codecs.BOM_UTF8):  # counted with the line, not parsed
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                yield NotDocument("blank_line", nbytes, docs=0)
                # the blank lines right after it: one event, scanned by regex (an event per line took
                # 3 us a line in Python; the stage counts only their bytes, so the counts are the same)
                run = 0
                while taken := stream.skip_matching(self.blank_lines, self.max_record_bytes):
                    run += taken
                if run:
                    yield NotDocument("blank_line", run, docs=0)
                continue
            if not line.endswith(self.newline) and (stream.truncated or stream.corrupt):
                self.cut_reported = True
                yield Broken(end_of_data_reason(stream), offset, stream.corrupt or
                             "compressed data ends in the middle of this line", nbytes)
                continue
            try:
                # strict=False: raw control characters in strings (tabs, NULs) occur in real dumps; the
                # record is kept and sanitize.py removes those it removes from every reader's strings
                obj = json.loads(line.decode("utf-8"), strict=False)
            except UnicodeDecodeError as e:
                yield Broken("invalid_utf8", offset, f"line is not UTF-8: {e}", nbytes)
                continue
            except ValueError as e:
                yield Broken("invalid_json", offset, f"line is not JSON: {e}", nbytes)
                continue
            except RecursionError:
                yield Broken("json_too_deep", offset, "line nests arrays/objects deeper than the JSON parser "
                             "recurses (RecursionError)", nbytes)
                continue
            yield object_event(obj, fields, offset, nbytes)
