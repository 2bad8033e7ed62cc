"""Crawl and corpus dumps to documents: WARC, WET, ARC, JSON lines, JSON arrays and Parquet,
streamed file by file.

`read_file(path, ...)` yields one event per piece of input (pipeline.ingest.events); the ingest
stage (pipeline/stages/ingest.py) routes them to data/, rejected/, errors/ and the dropped counts.

Accounting rules (what stats.json of the ingest stage counts):
- A *document in* is one record the reader could delimit: a WARC/WET/ARC record whose header parsed,
  a non-blank JSON line, an element of a JSON array (or of pretty-printed JSON objects one after
  another), a Parquet row. It ends in exactly one place: kept, dropped (non-document
  record types, non-HTML payloads, non-2xx responses, `empty_text`) or errors (`invalid_json`,
  `invalid_utf8` (bytes that are not UTF-8, or a lone surrogate escape), `json_too_deep`,
  `record_too_large`, `extraction_budget` (a page nested deeper or larger than the HTML budget),
  `length_mismatch` (a Content-Length the following bytes contradict), `empty_record`
  (Content-Length 0), a record cut short by `truncated_gzip`, ...).
- Control characters (NUL included, raw or escaped as `\u0000`) are removed from every reader's
  strings (pipeline/ingest/sanitize.py).
- *Bytes in* are the uncompressed bytes of those records (a WARC record from its `WARC/` line to
  the next record, a JSON line with its newline; a Parquet row counts its text's UTF-8 bytes).
- Bytes no record could be delimited from are errors with docs=0 and their bytes: a header that
  does not parse (`corrupt_header`, up to the next `WARC/` line), a file that is not what its
  name says (`not_gzip`, the whole file), a bzip2 or xz file (`unsupported_compression`, the
  whole file: read as plain, its bytes would make bogus records), compressed bytes that do not
  decode (`corrupt_gzip`, counted compressed, from the damaged member (or, in a member that gave
  output before the damage, from the first byte not decoded: the byte the decoder finds the damage
  in, for zstd the 512-byte slice it is in; the records decoded before it are read; damage only a
  checksum at the end finds: from the input of the decoder call that found it, its output dropped)
  up to the next member header, where reading goes on),
  a compressed stream that ends inside a member or zstd frame that gave no output (`truncated_gzip`,
  `truncated_zstd`, counted compressed: that member's bytes).
- File-level problems with nothing to count are errors with docs=0 and bytes=0: a configured path
  that matches no file (`missing_path`), a directory symlink that loops back into its own folder
  (`symlink_loop`, not followed), an empty file (`empty_file`), a compressed stream that ends between records
  inside a member whose output is all in whole records (`truncated_gzip`), a file that cannot be opened
  (`unreadable_file`, its size if known).
- Blank JSON lines are dropped as `blank_line` with docs=0.
- A Parquet row group that does not read is one `corrupt_parquet` error with its rows not read as docs
  and its compressed bytes; a footer or schema that does not read is one for the file (docs=0, its size).
- A reader that fails in a way no rule above foresaw (a bug, a library's unexpected exception) ends
  its file with one `reader_failed` error naming the exception, counting the compressed bytes it
  had not read yet (docs=0); what it had read is kept, and the other files go on.
"""
from __future__ import annotations

import codecs
import logging
import traceback
from typing import IO, Callable, Iterator

from pipeline import storage
from pipeline.ingest.events import Broken, Event
from pipeline.ingest.html import Page, html_page
from pipeline.ingest.json_array import JsonArrayReader
from pipeline.ingest.jsonl import FieldMap, JsonlReader
from pipeline.ingest.parquet_source import ParquetReader
from pipeline.ingest.streams import Decompressed, expected_compression, sniff_compression
from pipeline.ingest.warc import WarcReader

log = logging.getLogger(__name__)

# Compressions some corpus dumps come in (Wikipedia's is bzip2) that the readers do not decode, by magic bytes
UNSUPPORTED_COMPRESSIONS = {b"BZh": "bzip2", b"\xfd7zX": "xz"}
NAME_FORMATS = {"wet": "wet", "warc": "warc", "arc": "arc", "jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}


def format_from_name(path: str) -> str | None:
    """The format a file name says; `.json` says nothing (JSON lines or one array: the bytes decide)."""
    name = path.lower().rsplit("/", 1)[-1]
    # Whole dot-separated parts, the last known one deciding: `x.warc.wet.gz` is WET, `forum.archive.jsonl`
    # and `game.warcraft.jsonl` are JSON lines.
    for part in reversed(name.split(".")[1:]):
        if part in NAME_FORMATS:
            return NAME_FORMATS[part]
    return None


def format_from_bytes(raw_head: bytes, text_head: bytes) -> str | None:
    if raw_head.startswith(b"PAR1"):
        return "parquet"
    if text_head.startswith(b"WARC/"):
        return "warc"
    start = text_head.removeprefix(codecs.BOM_UTF8).lstrip()[:1]  # the JSON readers count a BOM with the data
    return {b"{": "jsonl", b"[": "json"}.get(start)


def _size(path: str) -> int:
    try:
        return storage.size(path)
    except OSError:
        return 0


def read_file(path: str, fmt: str, fields: FieldMap, max_record_bytes: int,
              extract_html: Callable[[str], Page] = html_page) -> Iterator[Event]:
    """Events for every byte of one input file; never raises on bad input."""
    try:
        raw = storage.open_input(path)
        head = raw.read(4)
        raw.seek(0)
    except OSError as e:
        yield Broken("unreadable_file", None, f"cannot read {path}: {e}", _size(path), docs=0)
        return
    with raw:
        if not head:
            yield Broken("empty_file", 0, f"{path} is empty", 0, docs=0)
            return
        try:
            yield from _read_open_file(path, raw, head, fmt, fields, max_record_bytes, extract_html)
        except OSError as e:  # an I/O error in the middle of the file: report it, keep what was read
            yield Broken("unreadable_file", None, f"read error in {path}: {e}", 0, docs=0)
        except Exception as e:
            unread = max(_size(path) - _tell(raw), 0)
            yield Broken("reader_failed", None, f"{type(e).__name__} while reading {path}; the rest of the file "
                         f"({unread} compressed bytes) is not read:\n{traceback.format_exc()}", unread, docs=0)


def _tell(raw: IO[bytes]) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


def _read_open_file(path: str, raw: IO[bytes], head: bytes, fmt: str, fields: FieldMap,
                    max_record_bytes: int, extract_html: Callable[[str], Page]) -> Iterator[Event]:
    compression = sniff_compression(head)
    promised = expected_compression(path)
    if promised and promised != compression:
        yield Broken(f"not_{promised}", 0, f"{path}: the name says {promised} but the file does not start "
                     f"with {promised} magic bytes (starts with {head!r})", _size(path), docs=0)
        return
    unsupported = next((name for magic, name in UNSUPPORTED_COMPRESSIONS.items() if head.startswith(magic)), None)
    if unsupported:
        yield Broken("unsupported_compression", 0, f"{path} is {unsupported}-compressed, which ingest does not "
                     f"decompress; recompress it with gzip or zstd", _size(path), docs=0)
        return
    if fmt == "auto":
        fmt = format_from_name(path) or ("parquet" if head.startswith(b"PAR1") else None)
    if fmt == "parquet":
        try:
            reader = ParquetReader(raw, fields, max_record_bytes)
        except Exception as e:  # a footer or schema pyarrow cannot read (ArrowInvalid, OSError): no rows to count
            yield Broken("corrupt_parquet", None, f"{path}: {e}", _size(path), docs=0)
            return
        yield from reader  # a damaged row group is an error of its own
        return
    stream = Decompressed(raw, compression)
    if fmt is None:
        fmt = format_from_bytes(head, stream.peek(64))
        if fmt is None:
            yield Broken("unknown_format", 0, f"{path}: cannot tell the format from the name or the first bytes "
                         f"{stream.peek(16)!r}; set `format` on the source", _size(path), docs=0)
            return
    if fmt in ("warc", "wet", "arc"):
        yield from WarcReader(stream, max_record_bytes, arc=fmt == "arc", extract_html=extract_html)
    elif fmt == "json":
        yield from JsonArrayReader(stream, fields, max_record_bytes)
    else:
        lines = JsonlReader(stream, fields, max_record_bytes)
        if lines.first_record_spans_lines:  # read line by line, each of its lines would be an error
            log.warning("%s: the first record spans several lines, so this is not JSON lines (pretty-printed "
                        "JSON?); read as JSON values one after another", path)
            yield from JsonArrayReader(stream, fields, max_record_bytes)
        else:
            yield from lines
