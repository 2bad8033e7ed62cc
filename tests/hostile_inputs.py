"""Hostile inputs for the ingest stage (issue 15), written at test time, each with what the stage
must make of it: the error reason and offset of the bad record, and the good records around it
that must be kept. Used by tests/test_hostile.py (scaled down) and bench/hostile.py (full size).

Each file holds good records before and after the bad one, so "the other records are kept" is
checked in the same file; every good record's id starts with `keep-`.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard


@dataclass(frozen=True)
class Scale:
    """Sizes of the inputs that cost time to write or read; the limits of the run scale with them."""

    bomb_bytes: int = 10 << 30  # zeros in the zstd and gzip bombs (issue 15: 10 GiB)
    deep_nesting: int = 100_000  # nested [ in JSON, nested <div> in a page
    tiny_tags: int = 1_000_000
    long_line_bytes: int = 300 << 20
    max_record_bytes: int = 64 << 20  # the run's ingest.max_record_bytes


FULL = Scale()
CI = Scale(bomb_bytes=64 << 20, tiny_tags=20_000, long_line_bytes=5 << 20, max_record_bytes=2 << 20)


@dataclass
class Case:
    name: str  # what the input is (the README's reliability table uses it)
    file: str  # path relative to the inputs folder
    reason: str | None  # the error reason of the bad record; None: the record is kept
    offset: int | None = None  # its source_offset (None: a file-level error with no offset)
    keep: list[str] = field(default_factory=list)  # record ids that must be kept


def jsonl_line(rid: str, text: str) -> bytes:
    return json.dumps({"id": rid, "text": text}).encode() + b"\n"


def warc_record(rec_type: str, url: str, block: bytes, rid: str, length: int | None = None,
                content_type: str = "application/http; msgtype=response") -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {rec_type}\r\nWARC-Record-ID: <urn:test:{rid}>\r\nWARC-Target-URI: {url}\r\n"
            f"WARC-Date: 2024-01-01T00:00:00Z\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(block) if length is None else length}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def html_response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body


def page(rid: str, inner: bytes = b"") -> bytes:
    body = b"<html><body><main><p>Good page " + rid.encode() + b" with some text.</p>" + inner + b"</main></body></html>"
    return warc_record("response", f"http://example.test/{rid}", html_response(body), rid)


def _zstd_zeros_line(n: int) -> bytes:
    """One zstd frame of n zero bytes and a newline, written without holding n bytes."""
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    zeros, parts = bytes(1 << 20), []
    for _ in range(n >> 20):
        parts.append(cobj.compress(zeros))
    parts.append(cobj.compress(bytes(n & ((1 << 20) - 1)) + b"\n"))
    parts.append(cobj.flush())
    return b"".join(parts)


def _gzip_zeros_line(n: int) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # deflate tops out near 1000:1 at any level
    zeros, parts = bytes(1 << 20), []
    for _ in range(n >> 20):
        parts.append(z.compress(zeros))
    parts.append(z.compress(bytes(n & ((1 << 20) - 1)) + b"\n") + z.flush())
    return b"".join(parts)


def write_hostile_inputs(root: Path, scale: Scale) -> list[Case]:
    """Write every hostile input under root/inputs (plus root/loop, a folder with symlink loops)."""
    d = root / "inputs"
    d.mkdir(parents=True)
    cases: list[Case] = []

    def jsonl_case(name: str, file: str, bad: bytes, reason: str | None, compress=None) -> None:
        before, after = jsonl_line(f"keep-{file}-1", "first"), jsonl_line(f"keep-{file}-2", "third")
        data = before + bad + after
        (d / file).write_bytes(compress(data) if compress else data)
        cases.append(Case(name, file, reason, len(before) if reason else None,
                          [f"keep-{file}-1", f"keep-{file}-2"]))

    # -- inputs that stopped or stalled the stage before issue 15
    jsonl_case("JSON line with a lone surrogate escape", "surrogate.jsonl",
               b'{"id": "bad", "text": "caf\\ud800 au lait"}\n', "invalid_utf8")
    jsonl_case(f"{scale.deep_nesting:,} nested [ in a JSON line", "deep.jsonl",
               b'{"id": "bad", "text": "x", "deep": ' + b"[" * scale.deep_nesting + b"]" * scale.deep_nesting + b"}\n",
               "json_too_deep")
    elements = [{"id": "keep-surrogate.json-1", "text": "first"}, None, {"id": "keep-surrogate.json-2", "text": "third"}]
    head = b"[" + json.dumps(elements[0]).encode() + b", "
    array = head + b'{"id": "bad", "text": "\\udc80"}, ' + json.dumps(elements[2]).encode() + b"]"
    (d / "surrogate.json").write_bytes(array)
    cases.append(Case("JSON array element with a lone surrogate escape", "surrogate.json", "invalid_utf8",
                      len(head), ["keep-surrogate.json-1", "keep-surrogate.json-2"]))
    head = b"[" + json.dumps({"id": "keep-deep.json-1", "text": "first"}).encode() + b",\n"
    deep = b'{"text": ' + b"[" * scale.deep_nesting + b'"]"' + b"]" * scale.deep_nesting + b"}"
    (d / "deep.json").write_bytes(head + deep + b",\n" + json.dumps({"id": "keep-deep.json-2", "text": "third"}).encode() + b"]")
    cases.append(Case(f"{scale.deep_nesting:,} nested [ in a JSON array element", "deep.json", "json_too_deep",
                      len(head), ["keep-deep.json-1", "keep-deep.json-2"]))
    first = zstandard.ZstdCompressor().compress(jsonl_line("keep-bomb.jsonl.zst-1", "first"))
    bomb = _zstd_zeros_line(scale.bomb_bytes)
    (d / "bomb.jsonl.zst").write_bytes(first + bomb + zstandard.ZstdCompressor().compress(jsonl_line("keep-bomb.jsonl.zst-2", "third")))
    cases.append(Case(f"zstd bomb: {scale.bomb_bytes >> 20:,} MiB of zeros in {len(bomb):,} bytes", "bomb.jsonl.zst",
                      "record_too_large", len(jsonl_line("keep-bomb.jsonl.zst-1", "first")),
                      ["keep-bomb.jsonl.zst-1", "keep-bomb.jsonl.zst-2"]))
    deep_page = b"<div>" * scale.deep_nesting + b"deep" + b"</div>" * scale.deep_nesting
    bad = warc_record("response", "http://example.test/deep", html_response(b"<html><body>" + deep_page + b"</body></html>"), "bad")
    (d / "deep-page.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in (page("keep-deep-page-1"), bad, page("keep-deep-page-2"))))
    cases.append(Case(f"{scale.deep_nesting:,} nested <div> in a page", "deep-page.warc.gz", "extraction_budget",
                      len(gzip.compress(page("keep-deep-page-1"))), ["urn:test:keep-deep-page-1", "urn:test:keep-deep-page-2"]))

    # -- identity and integrity (issue 14, item 7)
    text = "这是一个测试页面，内容长度按字符计算而不是按字节。" * 4
    wet = (warc_record("conversion", "http://example.test/zh", text.encode(), "bad", length=len(text),
                       content_type="text/plain"))
    good_wet = [warc_record("conversion", f"http://example.test/{i}", f"Plain text {i}.".encode(), f"keep-wet-{i}",
                            content_type="text/plain") for i in (1, 2)]
    (d / "char-lengths.warc.wet").write_bytes(good_wet[0] + wet + good_wet[1])
    cases.append(Case("WET record whose Content-Length counts characters", "char-lengths.warc.wet", "length_mismatch",
                      len(good_wet[0]), ["urn:test:keep-wet-1", "urn:test:keep-wet-2"]))

    # -- inputs that were already handled, and must stay so
    jsonl_case("escaped \\u0000 in a JSON string (removed, record kept)", "nul-escape.jsonl",
               b'{"id": "keep-nul-escape.jsonl-nul", "text": "te\\u0000xt"}\n', None)
    cases[-1].keep.append("keep-nul-escape.jsonl-nul")
    nul_page = page("keep-nul-page", b"<p>raw\x00nul</p>")
    (d / "nul.warc").write_bytes(page("keep-nul-1") + nul_page + page("keep-nul-2"))
    cases.append(Case("raw NUL bytes in a page (removed, record kept)", "nul.warc", None, None,
                      ["urn:test:keep-nul-1", "urn:test:keep-nul-page", "urn:test:keep-nul-2"]))
    jsonl_case("JSON line that is not UTF-8", "invalid-utf8.jsonl", b'{"id": "bad", "text": "caf\xe9"}\n', "invalid_utf8")
    jsonl_case("100,000-digit number in a JSON line", "digits.jsonl",
               b'{"id": "bad", "text": "x", "n": ' + b"9" * 100_000 + b"}\n", "invalid_json")
    jsonl_case(f"JSON line of {scale.long_line_bytes >> 20} MiB", "long-line.jsonl",
               b'{"id": "bad", "text": "' + b"x" * scale.long_line_bytes + b'"}\n', "record_too_large")
    before, after = jsonl_line("keep-bomb.jsonl.gz-1", "first"), jsonl_line("keep-bomb.jsonl.gz-2", "third")
    (d / "bomb.jsonl.gz").write_bytes(gzip.compress(before) + _gzip_zeros_line(scale.bomb_bytes) + gzip.compress(after))
    cases.append(Case(f"gzip bomb: {scale.bomb_bytes >> 20:,} MiB of zeros", "bomb.jsonl.gz", "record_too_large",
                      len(before), ["keep-bomb.jsonl.gz-1", "keep-bomb.jsonl.gz-2"]))
    tags = b"<b>x</b>" * scale.tiny_tags
    (d / "tiny-tags.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in (page("keep-tags-1"), page("keep-tags-many", tags))))
    cases.append(Case(f"{scale.tiny_tags:,} tiny tags in a page (kept)", "tiny-tags.warc.gz", None, None,
                      ["urn:test:keep-tags-1", "urn:test:keep-tags-many"]))
    short = page("keep-past-eof-1") + page("bad", b"<p>" + b"cut " * 500 + b"</p>")[:-200]
    (d / "past-eof.warc").write_bytes(short)
    cases.append(Case("Content-Length past the end of the file", "past-eof.warc", "truncated_record",
                      len(page("keep-past-eof-1")), ["urn:test:keep-past-eof-1"]))
    table = pa.table({"id": ["keep-x"], "body": ["the text is under another key"]})
    pq.write_table(table, d / "wrong-column.parquet")
    cases.append(Case("Parquet without the text column", "wrong-column.parquet", "missing_text", 0))
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(100)], "text": ["x" * 100] * 100}), d / "cut.parquet")
    (d / "cut.parquet").write_bytes((d / "cut.parquet").read_bytes()[:-300])
    cases.append(Case("truncated Parquet", "cut.parquet", "corrupt_parquet"))
    (d / "empty.jsonl").write_bytes(b"")
    cases.append(Case("empty file", "empty.jsonl", "empty_file", 0))

    # -- input expansion: symlink loops (not followed, one error row each), each real file once
    loop = root / "loop"
    (loop / "sub").mkdir(parents=True)
    (loop / "a.jsonl").write_bytes(jsonl_line("keep-loop-a", "in the looped folder"))
    (loop / "sub" / "b.jsonl").write_bytes(jsonl_line("keep-loop-b", "below it"))
    os.symlink(".", loop / "self")
    os.symlink("..", loop / "sub" / "up")
    os.symlink("sub", loop / "sub-again")
    os.symlink("a.jsonl", loop / "a-again.jsonl")
    return cases


def sources(root: Path) -> list[dict]:
    return [{"name": "hostile", "paths": [str(root / "inputs"), str(root / "inputs" / "no-such-*.jsonl")]},
            {"name": "looped", "paths": [str(root / "loop")]}]
