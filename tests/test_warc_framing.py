"""Where WARC records and compressed members begin and end: a Content-Length that runs into the next
record, mixed gzip layouts, damaged members, bytes between records, zstd skippable frames and
payload sniffing (pipeline/ingest/warc.py, pipeline/ingest/streams.py). Small synthetic files only."""
from __future__ import annotations

import base64
import gzip
import hashlib

import zstandard

from hostile_inputs import html_response, jsonl_line, page, warc_record
from pipeline.ingest import read_file
from pipeline.ingest.events import Broken, Document, NotDocument
from pipeline.ingest.jsonl import FieldMap


def events(path, fmt="auto"):
    return list(read_file(str(path), fmt, FieldMap(), 1 << 20))


def summary(evs):
    return [(e.reason, e.docs) if isinstance(e, (Broken, NotDocument)) else e.id for e in evs]


def write(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def overrunning(rid, by=10):
    block = html_response(b"<html><body><main><p>A page whose length is wrong.</p></main></body></html>")
    return warc_record("response", f"http://example.test/{rid}", block, rid, length=len(block) + by)


def test_a_content_length_too_large_ends_at_the_next_record(tmp_path):
    # a good record that quotes a WARC record in its payload is not cut there: its length is right
    quoting = page("quoting", b"<pre>\r\n\r\nWARC/1.0\r\nWARC-Type: response\r\n</pre>")
    records = [page("keep-1"), overrunning("bad"), page("keep-2"), quoting]
    for name, data in (("plain.warc", b"".join(records)),
                       ("members.warc.gz", b"".join(gzip.compress(r) for r in records))):
        evs = events(write(tmp_path, name, data))
        assert summary(evs) == ["urn:test:keep-1", ("length_mismatch", 1), "urn:test:keep-2", "urn:test:quoting"]
        # 10 bytes over, less the 4 of the CRLFs after the content
        assert evs[1].nbytes == len(records[1]) and "runs 6 bytes into the next record" in evs[1].message
        assert sum(e.nbytes for e in evs) == sum(map(len, records))


def test_an_overrun_stops_at_a_gzip_member_start_without_a_blank_line(tmp_path):
    bad = overrunning("bad", by=3).removesuffix(b"\r\n\r\n")
    data = b"".join(gzip.compress(r) for r in (page("keep-1"), bad, page("keep-2")))
    assert summary(events(write(tmp_path, "x.warc.gz", data))) == [
        "urn:test:keep-1", ("length_mismatch", 1), "urn:test:keep-2"]


def test_a_file_converted_to_lf_line_endings_loses_no_record_uncounted(tmp_path):
    records = [page(f"r{i}").replace(b"\r\n", b"\n") for i in range(4)]
    evs = events(write(tmp_path, "lf.warc", b"".join(records)))
    assert [e.nbytes for e in evs] == [len(r) for r in records]
    assert all(isinstance(e, Broken) and e.docs == 1 for e in evs)


def test_mixed_gzip_layouts_give_unique_offsets_and_one_layout_files_keep_theirs(tmp_path):
    records = [page(f"r{i}", b"<p>" + b"x" * (37 * i) + b"</p>") for i in range(30)]
    members = [gzip.compress(r, mtime=0) for r in records]
    member_starts = [sum(map(len, members[:i])) for i in range(len(members))]
    record_starts = [sum(map(len, records[:i])) for i in range(len(records))]

    def offsets(name, data):
        return [e.source_offset for e in events(write(tmp_path, name, data)) if isinstance(e, Document)]

    assert offsets("per-record.warc.gz", b"".join(members)) == member_starts
    assert offsets("one-stream.warc.gz", gzip.compress(b"".join(records))) == record_starts
    assert offsets("plain.warc", b"".join(records)) == record_starts
    # a member of two records, then one-record members: search for a layout where the second record's
    # uncompressed offset is some member's file offset (the two kinds of offset would collide)
    for pad in range(3000):
        first = page("first", b"<p>" + b"y" * pad + b"</p>")
        head = gzip.compress(first + records[0], mtime=0)
        if len(first) - len(head) in member_starts:
            break
    mixed = offsets("mixed.warc.gz", head + b"".join(members))
    assert len(mixed) == 32 and len(set(mixed)) == 32 and mixed[:2] == [0, len(first)]


def test_a_record_after_a_member_damaged_from_its_start_keeps_its_own_offset(tmp_path):
    good1, good2 = gzip.compress(page("keep-1")), gzip.compress(page("keep-2"))
    bad = bytearray(gzip.compress(page("bad")))
    bad[10:40] = b"\xff" * 30
    evs = events(write(tmp_path, "d.warc.gz", good1 + bytes(bad) + good2))
    assert [(summary([e])[0], e.offset if isinstance(e, Broken) else e.source_offset) for e in evs] == [
        ("urn:test:keep-1", 0), (("corrupt_gzip", 0), len(good1)), ("urn:test:keep-2", len(good1) + len(bad))]


def test_newlines_between_records_are_in_some_event(tmp_path):
    data = b"\r\n\r\n" + page("keep-1") + page("keep-2")
    evs = events(write(tmp_path, "lead.warc", data))
    assert summary(evs) == ["urn:test:keep-1", "urn:test:keep-2"] and sum(e.nbytes for e in evs) == len(data)
    evs = events(write(tmp_path, "blank.warc", b"\n" * 100), fmt="warc")
    assert [(e.reason, e.nbytes, e.docs) for e in evs] == [("blank_line", 100, 0)]
    # after a damaged member, the next member starting with newlines
    bad = bytearray(gzip.compress(page("bad")))
    bad[10:40] = b"\xff" * 30
    evs = events(write(tmp_path, "gap.warc.gz", gzip.compress(page("keep-1")) + bytes(bad)
                       + gzip.compress(b"\r\n\r\n" + page("keep-2"))))
    assert [e.nbytes for e in evs if not isinstance(e, Broken)] == [len(page("keep-1")), 4 + len(page("keep-2"))]


def test_zstd_skippable_frames_are_skipped(tmp_path):
    def skippable(payload, magic=0x184D2A50):
        return magic.to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload
    lines = [jsonl_line(str(i), f"line {i}") for i in range(6)]
    frames = [zstandard.ZstdCompressor().compress(b"".join(lines[i:i + 2])) for i in range(0, 6, 2)]
    for name, data in (("start.jsonl.zst", skippable(b"\0" * 4) + b"".join(frames)),
                       ("between.jsonl.zst", frames[0] + skippable(b"seek", 0x184D2A5F) + frames[1]
                        + skippable(b"") + frames[2])):
        assert [e.id for e in events(write(tmp_path, name, data))] == [str(i) for i in range(6)], name


def test_html_without_a_content_type_is_sniffed_past_its_preamble(tmp_path):
    body = (b"<html><head><title>t</title></head><body><main><p>" + "正文的一段文字。".encode() * 20
            + b"</p></main></body></html>")
    starts = {"bom": b"\xef\xbb\xbf", "comment": b"<!-- generated -->\n", "xml": b'<?xml version="1.0"?>\n',
              "meta": b'<meta charset="utf-8">', "title": b"<title>t</title>", "script": b"<script>x=1</script>"}
    records = [warc_record("response", f"http://example.test/{k}", b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"
                           + v + body, k)
               for k, v in starts.items()]
    records.append(warc_record("response", "HTTP://EXAMPLE.TEST/UPPER", html_response(body), "upper"))
    evs = events(write(tmp_path, "sniff.warc", b"".join(records)))
    assert summary(evs) == [f"urn:test:{k}" for k in starts] + ["urn:test:upper"]


def test_a_file_gzipped_whole_as_one_member_damaged_late_keeps_the_records_before(tmp_path):
    # `gzip x.warc` makes one member; the reader has moved past its start long before the damage
    records = [page(f"r{i}", b"<p>" + f"paragraph {i} ".encode() * 2000 + b"</p>") for i in range(60)]
    gz = gzip.compress(b"".join(records))
    at = len(gz) * 9 // 10
    for name, data, reason in (("cut.warc.gz", gz[:at], "truncated_gzip"),
                               ("flip.warc.gz", gz[:at] + bytes([gz[at] ^ 0xFF]) + gz[at + 1:], "corrupt_gzip")):
        evs = events(write(tmp_path, name, data))
        kept = [e for e in evs if isinstance(e, Document)]
        assert len(kept) > 20 and [e.id for e in kept] == [f"urn:test:r{i}" for i in range(len(kept))], name
        assert {e.reason for e in evs if isinstance(e, Broken)} == {reason}, name
    # the damaged member's compressed bytes are counted from where its decoded output stops, not from 0
    undecoded = evs[-1]
    assert undecoded.docs == 0 and 0 < undecoded.offset and undecoded.nbytes == len(gz) - undecoded.offset


def test_compressed_bytes_that_decode_to_nothing_are_counted(tmp_path):
    def skippable_cut():
        return (0x184D2A50).to_bytes(4, "little") + (100).to_bytes(4, "little") + b"\0" * 10
    whole = gzip.compress(page("keep"))
    cases = [("named.warc", b"\x1f\x8b\x57", "truncated_gzip"),  # sniffed as gzip, cut in its header
             ("header.jsonl.gz", b"\x1f\x8b\x08\x00", "truncated_gzip"),
             ("frame.jsonl.zst", b"\x28\xb5\x2f\xfd\x00", "truncated_zstd"),
             ("skippable.jsonl.zst", skippable_cut(), "truncated_zstd"),
             ("after.warc.gz", whole + b"\x1f\x8b\x08", "truncated_gzip")]
    for name, data, reason in cases:
        evs = events(write(tmp_path, name, data))
        broken = [e for e in evs if isinstance(e, Broken)]
        assert [(e.reason, e.docs) for e in broken] == [(reason, 0)], name
        undecoded = len(data) - (len(whole) if name.startswith("after") else 0)
        assert broken[0].nbytes == undecoded, name


def with_block_digest(record: bytes, digest: str) -> bytes:
    """`record` (hostile_inputs.warc_record) with a WARC-Block-Digest header line."""
    return record.replace(b"\r\nContent-Type:", f"\r\nWARC-Block-Digest: {digest}\r\nContent-Type:".encode(), 1)


def sha1_block(record: bytes) -> bytes:
    return hashlib.sha1(record.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n\r\n")).digest()


def test_a_document_whose_block_is_not_what_its_digest_says_is_an_error(tmp_path):
    good, bad = page("good"), page("bad")
    records = [with_block_digest(good, "sha1:" + base64.b32encode(sha1_block(good)).decode()),
               with_block_digest(bad, "sha1:" + base64.b32encode(sha1_block(bad)).decode()).replace(b"Good page", b"Good pagf"),
               with_block_digest(page("hex"), "sha1:" + sha1_block(page("hex")).hex()),
               with_block_digest(page("sha256"), "sha256:" + base64.b32encode(hashlib.sha256(
                   page("sha256").split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n\r\n")).digest()).decode()),
               with_block_digest(page("unknown-algo"), "crc99:AAAA"),
               with_block_digest(page("undecodable"), "sha1:not a digest"),
               page("none")]
    evs = events(write(tmp_path, "x.warc", b"".join(records)))
    assert summary(evs) == ["urn:test:good", ("digest_mismatch", 1), "urn:test:hex", "urn:test:sha256",
                            "urn:test:unknown-algo", "urn:test:undecodable", "urn:test:none"]
    assert evs[1].doc_id == "urn:test:bad" and evs[1].offset == len(records[0])
    assert sum(e.nbytes for e in evs) == sum(map(len, records))


def test_a_changed_byte_in_a_real_crawl_record_is_caught_by_its_digest(tmp_path, shared_data):
    """A byte changed after the crawl (in a one-member .gz, deflate decodes most damage into other bytes
    and reports it only at the member's end) makes its record an error, not a document with damaged
    text: a real CommonCrawl WARC, where every response has a block digest."""
    raw = gzip.decompress((shared_data / "crawl" / "warc" / "cc-main-2020-34-sample.warc.gz").read_bytes())
    clean = events(write(tmp_path, "clean.warc", raw))
    documents = [e for e in clean if isinstance(e, Document)]
    assert len(documents) == 16
    # a letter of the 9th page's text, changed as a flipped bit would change it
    target = documents[8]
    word = next(w for w in target.text.split() if len(w) > 6 and w.isascii() and w.isalpha())
    at = raw.index(word.encode(), target.source_offset)
    damaged = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
    evs = events(write(tmp_path, "damaged.warc", damaged))
    assert [e.id for e in evs if isinstance(e, Document)] == [d.id for d in documents if d is not target]
    broken = [e for e in evs if isinstance(e, Broken)]
    assert [(e.reason, e.doc_id, e.offset) for e in broken] == [("digest_mismatch", target.id, target.source_offset)]


def test_a_record_over_the_payload_bound_is_not_buffered_for_its_digest(tmp_path, monkeypatch):
    from pipeline.ingest.streams import Decompressed

    big = page("big", b"<p>" + b"x" * (2 << 20) + b"</p>")
    asked = []
    monkeypatch.setattr(Decompressed, "digest_ahead", lambda self, algo, n: asked.append(n))
    path = write(tmp_path, "big.warc", with_block_digest(big, "sha1:" + base64.b32encode(sha1_block(big)).decode()))
    assert summary(events(path)) == [("record_too_large", 1)]  # events() reads with a 1 MiB bound
    assert asked == []


def test_records_of_types_outside_the_standard_share_one_reason(tmp_path):
    """The reason must not come from the file: 300 made-up types gave 300 reasons, each a key in the stage's
    counts and the report (the driver's share grew by a key per record)."""
    data = b"".join(warc_record(f"made-up-{i}", f"http://example.test/{i}", b"x", f"r{i}") for i in range(300))
    evs = events(write(tmp_path, "types.warc", data + page("good")))
    assert {e.reason for e in evs if isinstance(e, NotDocument)} == {"warc_unknown_type"}
    assert sum(isinstance(e, NotDocument) for e in evs) == 300 and isinstance(evs[-1], Document)
