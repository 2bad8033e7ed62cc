"""WARC and WET records to documents, streamed through warcio's record loader.

Documents: `response` records (HTTP payload, HTML to main text and its <title>), `resource` records
holding HTML, and WET `conversion` records (already plain text; no title). Everything else is counted, never written:
`warcinfo`, `warc_request`, `metadata`, `revisit`, `continuation`; responses with a non-2xx status
(`http_3xx`, ...); payloads that are not HTML (`non_html_image`, `non_html_css`, `non_html_js`,
`non_html_pdf`, ...). A page over the extraction budget (pipeline/ingest/html.py) is an
`extraction_budget` error.

A record's bytes run from its `WARC/` line to the next record (trailing CRLFs included), counted
uncompressed; newlines before the first record count with it (a file of newlines alone is one
`blank_line` event with docs=0). After a header that does not parse, reading resumes at the next line
starting with `WARC/`, so the records after a corrupt one are still read. A record whose Content-Length
ends before bytes that are not the next record (a WET file whose lengths count characters, not bytes)
is a `length_mismatch` error holding the bytes up to the next record, never a silently cut document.
So is one whose Content-Length runs past the start of the next record (a version line after a blank
line, or a gzip member start; a file converted to LF line endings has every length too large): it
ends there, and the next record is read as usual.

A document record whose header declares a `WARC-Block-Digest` (sha1:BASE32 as crawlers write it; hex
and base64 values, and any algorithm hashlib has, are read too) is hashed before it is read: a block
that is not what its writer hashed (bytes changed after the crawl: a flipped bit that a one-member gzip
file's checksum only reports at its end) is a `digest_mismatch` error, never a document with damaged
text. Records that are not documents (an image, a redirect) are not made errors by it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import traceback
from typing import Callable, Iterator

from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecordLoader
from warcio.statusandheaders import StatusAndHeadersParserException

from pipeline.ingest import charset
from pipeline.ingest.events import Broken, Document, Empty, Event, NotDocument, end_of_data_errors, end_of_data_reason
from pipeline.ingest.html import ExtractionOverBudget, Page, html_page
from pipeline.ingest.streams import CHUNK, LOOKAHEAD, Decompressed

WARC_HEADER = re.compile(rb"WARC/")
# where a record starts inside another's declared content (only looked for when that content is
# not followed by a record)
VERSION_LINE = re.compile(rb"WARC/1\.\d\r?\n")
AFTER_BLANK_LINE = re.compile(rb"\n\r?\n(?=WARC/1\.\d\r?\n)")
ARC_HEADER = re.compile(rb"\S+ \S+ \d{14} \S+ \d+\r?\n")  # url ip date mime length

NON_DOCUMENT_TYPES = {"warcinfo": "warcinfo", "request": "warc_request", "metadata": "metadata",
                      "revisit": "revisit", "continuation": "continuation"}
DOCUMENT_TYPES = ("response", "resource", "conversion")
UNKNOWN_TYPE = "warc_unknown_type"  # a WARC-Type outside the standard's, or none

# MIME type -> the kind named in the drop reason (non_html_<kind>); checked in order, by substring.
MIME_KINDS = (("html", "html"), ("xhtml", "html"), ("image/", "image"), ("css", "css"),
              ("javascript", "js"), ("ecmascript", "js"), ("pdf", "pdf"), ("json", "json"),
              ("xml", "xml"), ("rss", "xml"), ("atom", "xml"), ("video/", "media"), ("audio/", "media"),
              ("font", "font"), ("text/dns", "dns"), ("text/plain", "text"), ("zip", "archive"))
SNIFF = ((b"<!doctype html", "html"), (b"<html", "html"), (b"<head", "html"), (b"<body", "html"),
         (b"<meta", "html"), (b"<title", "html"), (b"<script", "html"),
         (b"%pdf", "pdf"), (b"\x89png", "image"), (b"gif8", "image"), (b"\xff\xd8\xff", "image"))
# what may come before the first tag of an HTML page: a UTF-8 BOM, white space, comments, an XML declaration
SNIFF_PREAMBLE = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<!--.*?-->|<\?xml[^>]*>)*", re.S | re.I)


class RecordTooLarge(Exception):
    pass


def payload_kind(content_type: str | None, head: bytes) -> str:
    """What a payload is, by its declared MIME type, else by its first bytes."""
    mime = (content_type or "").split(";")[0].strip().lower()
    for needle, kind in MIME_KINDS:
        if needle in mime:
            return kind
    start = head[SNIFF_PREAMBLE.match(head).end():][:64].lower()
    for magic, kind in SNIFF:
        if start.startswith(magic):
            return kind
    return "binary" if mime in ("", "application/octet-stream") else "other"


def read_bounded(stream, limit: int) -> bytes:
    """Read a payload to its end; RecordTooLarge beyond `limit` bytes (decoded payloads can grow)."""
    parts, total = [], 0
    while data := stream.read(CHUNK):
        total += len(data)
        if total > limit:
            raise RecordTooLarge(f"payload exceeds {limit} bytes")
        parts.append(data)
    return b"".join(parts)


class WarcReader:
    """Events for every record of one WARC, WET or ARC stream.

    ARC files (the Internet Archive's format before WARC, CommonCrawl's until 2013) go through
    warcio's ARC-to-WARC conversion; they have no record ids, so their documents get
    the document id alone (`pipeline.schema.doc_id`; warcio's made-up random ids are not used)."""

    def __init__(self, stream: Decompressed, max_record_bytes: int, arc: bool = False,
                 extract_html: Callable[[str], Page] = html_page):
        self.stream = stream
        self.max_record_bytes = max_record_bytes
        self.extract_html = extract_html  # raises ExtractionOverBudget for a page over its budget
        self.arc = arc
        self.record_start = ARC_HEADER if arc else WARC_HEADER
        self.loader = ArcWarcRecordLoader(verify_http=False)

    def __iter__(self) -> Iterator[Event]:
        while True:
            self.cut_record_reported = False
            yield from self._records()
            yield from end_of_data_errors(self.stream, self.cut_record_reported, "record")
            if not self.stream.resume():
                return

    def _records(self) -> Iterator[Event]:
        stream = self.stream
        begin = stream.pos  # where the next event's bytes begin: newlines before a record count with it
        stream.skip_newlines()
        while not stream.at_end():
            start = stream.pos
            offset = stream.source_offset(start)
            try:
                record = self.loader.parse_record_stream(stream, known_format="arc" if self.arc else "warc",
                                                         no_record_parse=True)
            except (ArchiveLoadFailed, StatusAndHeadersParserException, EOFError, ValueError, TypeError) as e:
                self._resync(start)
                yield Broken("corrupt_header", offset, f"not a record header: {str(e).strip()[:500]}",
                             stream.pos - begin, docs=0)
                begin = stream.pos
                continue
            except Exception as e:  # anything else warcio may raise on garbage is a header it cannot read
                self._resync(start)
                yield Broken("corrupt_header", offset, f"not a record header ({type(e).__name__}): {e}",
                             stream.pos - begin, docs=0)
                begin = stream.pos
                continue
            rid = None if self.arc else record_id(record)
            if not (record.rec_headers.get_header("Content-Length") or "").strip().isdigit():
                self._resync(start)
                yield Broken("corrupt_header", offset, "record header without a valid Content-Length",
                             stream.pos - begin, doc_id=rid)
                begin = stream.pos
                continue
            # overrun() buffers the content, so only records within the payload bound are checked, for
            # an overrun and for their digest (a record over the bound is no document)
            bounded = not self.arc and record.length <= self.max_record_bytes
            inside = stream.overrun(record.length, VERSION_LINE, AFTER_BLANK_LINE) if bounded else None
            if inside is None:
                mismatch = self._digest_mismatch(record) if bounded else None
                event = self._record(record, rid, offset)
                if mismatch and isinstance(event, Document):
                    event = Broken("digest_mismatch", offset, mismatch, 0, doc_id=rid)
            else:
                record.raw_stream.limit = inside
                while record.raw_stream.read(CHUNK):
                    pass
                event = Broken("length_mismatch", offset, f"Content-Length {record.length} runs "
                               f"{record.length - inside} bytes into the next record (line endings converted?); "
                               f"the record ends where that one starts", 0, doc_id=rid)
            cut = record.raw_stream.limit > 0  # the data ended before Content-Length bytes
            separator = stream.skip_newlines()
            # Content-Length too short: the record's bytes go on where its blank line should be
            # (other bytes after a proper blank line are garbage between records: corrupt_header)
            if (not cut and separator < (1 if self.arc else 2) and not stream.at_end()
                    and not self.record_start.match(stream.peek(LOOKAHEAD))):
                overrun = stream.skip_to_line_matching(self.record_start)
                event = Broken("length_mismatch", offset, f"Content-Length {record.length} ends {overrun} bytes "
                               f"before the next record (does it count characters, not bytes?)", 0, doc_id=rid)
            event.nbytes = stream.pos - begin
            begin = stream.pos
            if cut:
                self.cut_record_reported = True
                event = Broken(end_of_data_reason(stream), offset,
                               f"record cut short: {record.raw_stream.limit} of {record.length} content bytes missing",
                               event.nbytes, doc_id=rid)
            yield event
        if stream.pos > begin:
            yield NotDocument("blank_line", stream.pos - begin, docs=0)

    def _resync(self, start: int) -> None:
        """Skip to the next line that starts a record, always moving past `start`."""
        if self.stream.pos == start:
            self.stream.skip_line_rest()
        self.stream.skip_to_line_matching(self.record_start)

    def _record(self, record, rid: str | None, offset: int) -> Event:
        """The event for one record, reading its content (the caller fixes `nbytes`)."""
        try:
            if record.rec_type in NON_DOCUMENT_TYPES:
                event = NotDocument(NON_DOCUMENT_TYPES[record.rec_type], 0)
            elif record.rec_type not in DOCUMENT_TYPES:
                # one reason, whatever the file says: a reason per WARC-Type value would let one file
                # grow the run's counts (and its report) by a key per record
                event = NotDocument(UNKNOWN_TYPE, 0)
            elif record.length == 0:
                event = Broken("empty_record", offset, f"{record.rec_type} record with Content-Length 0", 0, doc_id=rid)
            elif record.length > self.max_record_bytes:
                event = Broken("record_too_large", offset, f"record of {record.length} bytes is over "
                               f"ingest.max_record_bytes ({self.max_record_bytes}); skipped unread", 0, doc_id=rid)
            else:
                event = self._document(record, rid, offset)
        except RecordTooLarge as e:
            event = Broken("record_too_large", offset, str(e), 0, doc_id=rid)
        except ExtractionOverBudget as e:
            event = Broken("extraction_budget", offset, str(e), 0, doc_id=rid)
        except Exception:  # a payload no library could read: keep going with the next record
            event = Broken("unreadable_record", offset, traceback.format_exc(), 0, doc_id=rid)
        while record.raw_stream.read(CHUNK):  # the rest of the record, never held
            pass
        return event

    def _digest_mismatch(self, record) -> str | None:
        """Why a document record's block is not what its writer hashed (the block is buffered, see
        `Decompressed.overrun`), or None: it is, or it declares no digest to check."""
        declared = block_digest(record.rec_headers) if record.rec_type in DOCUMENT_TYPES else None
        if declared is None:
            return None
        algo, expected = declared
        actual = self.stream.digest_ahead(algo, record.length)
        if actual is None or actual == expected:  # None: the data ends inside it, a record cut short
            return None
        return (f"the record's {record.length} bytes do not hash to its WARC-Block-Digest "
                f"{record.rec_headers.get_header('WARC-Block-Digest').strip()}: changed since it was written (damaged?)")

    def _document(self, record, rid: str, offset: int) -> Event:
        headers = record.rec_headers
        url = headers.get_header("WARC-Target-URI")
        date = headers.get_header("WARC-Date")
        if record.rec_type == "conversion":
            payload = read_bounded(record.raw_stream, self.max_record_bytes)
            text, _ = charset.decode(payload, record.content_type, default="utf-8")
            text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
            title = None  # WET keeps only the text
            detail = "conversion record with no text"
        else:
            content_type = record.content_type
            if record.rec_type == "response" and url and url[:6].lower().startswith(("http:", "https:")):
                try:  # (warcio compares the scheme case-sensitively)
                    record.http_headers = self.loader.load_http_headers("response", url.lower(), record.raw_stream,
                                                                        record.length)
                except (StatusAndHeadersParserException, EOFError, ValueError) as e:
                    return Broken("corrupt_http_header", offset, f"HTTP headers do not parse: {e}", 0, doc_id=rid)
                if record.http_headers is not None:
                    status = record.http_headers.get_statuscode() or ""
                    if not status.startswith("2"):
                        return NotDocument(f"http_{status[:1] or 'no_status'}xx", 0)
                    content_type = record.http_headers.get_header("Content-Type")
            body = record.content_stream()
            head = body.read(512)
            kind = payload_kind(content_type, head)
            if kind != "html":
                return NotDocument(f"non_html_{kind}", 0)
            payload = head + read_bounded(body, self.max_record_bytes - len(head))
            html, _ = charset.decode(payload, content_type)
            page = self.extract_html(html)
            text, title = page.text, page.title
            detail = "no main text in the HTML"
        if not text:
            return Empty(rid, url, offset, date, 0, detail, title)
        return Document(rid, text, url, offset, date, 0, title)


def block_digest(headers) -> tuple[str, bytes] | None:
    """The record's WARC-Block-Digest as (hashlib algorithm, digest), or None when there is none to
    check against: no header, an algorithm hashlib lacks, or a value that does not decode (base32 as
    crawlers write it, hex or base64) to that algorithm's digest size."""
    algo, _, value = (headers.get_header("WARC-Block-Digest") or "").strip().partition(":")
    algo, value = algo.strip().lower(), value.strip()
    if algo not in hashlib.algorithms_available or not value:
        return None
    size = hashlib.new(algo).digest_size
    for decode in (lambda v: base64.b32decode(v, casefold=True), lambda v: base64.b16decode(v, casefold=True),
                   lambda v: base64.b64decode(v, altchars=b"-_" if "-" in v or "_" in v else None, validate=True)):
        try:
            digest = decode(value)
        except (binascii.Error, ValueError):
            continue
        if size and len(digest) == size:
            return algo, digest
    return None


def record_id(record) -> str | None:
    rid = record.rec_headers.get_header("WARC-Record-ID")
    return rid.strip().strip("<>") if rid else None
