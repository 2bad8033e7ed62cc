"""Corpus dumps that are not WARC (JSON lines, JSON arrays, Parquet) as real-world tools write them:
each test is a defect found feeding such a file to the readers, at reader level (no engine)."""
from __future__ import annotations

import bz2
import itertools
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import json_text, parquet_source, read_file
from pipeline.ingest.events import Broken, Document, NotDocument
from pipeline.ingest.json_text import JsonText, cut_short
from pipeline.ingest.jsonl import FieldMap
from pipeline.ingest.sanitize import clean

MAX_RECORD_BYTES = 1 << 20


def events(path: Path, fields: FieldMap = FieldMap(), max_record_bytes: int = MAX_RECORD_BYTES) -> list:
    return list(read_file(str(path), "auto", fields, max_record_bytes))


def test_raw_control_characters_in_json_strings_keep_the_record(tmp_path):
    """A raw tab or NUL inside a JSON string is not strict JSON, but real dumps hold them: the record
    is kept, the NUL removed as for every reader."""
    lines = tmp_path / "raw-controls.jsonl"
    lines.write_bytes(b'{"id": "a", "text": "tab\there, nul\x00here"}\n{"id": "b", "text": "next"}\n')
    array = tmp_path / "raw-controls.json"
    array.write_bytes(b'[{"id": "a", "text": "tab\there, nul\x00here"}, {"id": "b", "text": "next"}]')
    for path in (lines, array):
        evs = events(path)
        assert [type(e) for e in evs] == [Document, Document], evs
        assert clean(evs[0].text, "the text") == "tab\there, nulhere"


def test_parquet_text_in_a_binary_column_is_read_as_utf8(tmp_path):
    """Writers that leave strings unannotated store text as binary: it reads as UTF-8 (a value that is
    not is that row's invalid_utf8 error), and a binary id that is not UTF-8 keeps its record."""
    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"id": pa.array([b"a", b"\x9f\x00digest", b"c"], pa.binary()),
                             "text": pa.array([b"caf\xc3\xa9", b"second", b"caf\xe9"], pa.large_binary())}), path)
    evs = events(path)
    assert [(type(e), getattr(e, "reason", None)) for e in evs] == [
        (Document, None), (Document, None), (Broken, "invalid_utf8")]
    assert [evs[0].text, evs[1].text, evs[1].id] == ["café", "second", "\\x9f\x00digest"]
    assert (evs[2].offset, evs[2].nbytes) == (2, 4)


def string_array_unchecked(values: list[bytes]) -> pa.Array:
    """A string array holding `values` as they are, UTF-8 or not (as a careless writer leaves them)."""
    offsets = pa.array([0, *itertools.accumulate(len(v) for v in values)], pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.string(), len(values), [None, offsets, pa.py_buffer(b"".join(values))])


def test_a_parquet_string_that_is_not_utf8_costs_its_row_not_the_row_group(tmp_path):
    path = tmp_path / "bad-string.parquet"
    pq.write_table(pa.table({"id": string_array_unchecked([b"a", b"b", b"c\xff"]),
                             "text": string_array_unchecked([b"first", b"caf\xe9", b"third"])}), path)
    evs = events(path)
    assert [(type(e), getattr(e, "reason", None), e.nbytes) for e in evs] == [
        (Document, None, 5), (Broken, "invalid_utf8", 4), (Document, None, 5)]
    assert (evs[1].offset, evs[2].id, evs[2].text) == (1, "c\\xff", "third")


def test_a_parquet_text_over_max_record_bytes_is_record_too_large(tmp_path):
    """As a JSON line that long: later stages never get a text over the limit, whatever the format."""
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"text": ["short", "é" * 600, "x" * 1000]}), path)
    evs = events(path, max_record_bytes=1000)
    assert [(type(e), getattr(e, "reason", None), e.nbytes) for e in evs] == [
        (Document, None, 5), (Broken, "record_too_large", 1200), (Document, None, 1000)]
    assert evs[1].offset == 1 and "ingest.max_record_bytes (1000)" in evs[1].message


@pytest.mark.parametrize("name,compress", [("dump.jsonl.bz2", bz2.compress), ("dump.jsonl.xz", lzma.compress)])
def test_bzip2_and_xz_files_are_one_unsupported_compression_error(tmp_path, name, compress):
    """Read as plain, their bytes made documents in: each a bogus invalid_utf8 or invalid_json record."""
    path = tmp_path / name
    path.write_bytes(compress(b'{"text": "a document"}\n' * 1000))
    evs = events(path)
    assert [(e.reason, e.docs, e.nbytes) for e in evs] == [("unsupported_compression", 0, path.stat().st_size)]
    assert "gzip or zstd" in evs[0].message


def test_one_row_row_groups_read_together_and_a_damaged_one_stays_one_error(tmp_path, monkeypatch):
    """Small row groups are read in runs (a reader per group was ~12x slower: 1 M one-row groups took
    minutes); a damaged group in a run is still one corrupt_parquet error for its row."""
    path = tmp_path / "one-row-groups.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(3000)], "text": [f"row {i:04d}" for i in range(3000)]}),
                   path, row_group_size=1, compression="none", use_dictionary=False)
    readers = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda self, **kw: readers.append(kw) or iter_batches(self, **kw))
    assert len(events(path)) == 3000 and len(readers) == 3  # runs of 1024 rows
    data = bytearray(path.read_bytes())
    start = pq.ParquetFile(path).metadata.row_group(1500).column(1).data_page_offset
    data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    evs = events(path)
    assert [(e.reason, e.offset, e.docs) for e in evs if isinstance(e, Broken)] == [("corrupt_parquet", 1500, 1)]
    assert [(e.id, e.source_offset) for e in evs if isinstance(e, Document)] == \
        [(f"r{i}", i) for i in range(3000) if i != 1500]


def test_missing_text_says_what_the_field_held(tmp_path):
    path = tmp_path / "stray-values.jsonl"
    path.write_bytes(b'{"id": "1", "text": 5}\n{"id": "2", "text": ["a"]}\n{"id": "3", "text": null}\n{"id": "4"}\n')
    assert [e.message for e in events(path)] == [
        "field 'text': expected a string, found int (keys: id, text)",
        "field 'text': expected a string, found list (keys: id, text)",
        "field 'text': expected a string, found nothing (missing or null) (keys: id, text)",
        "field 'text': expected a string, found nothing (missing or null) (keys: id)"]


def test_lines_ending_in_a_lone_carriage_return_are_one_record_each(tmp_path):
    """Classic Mac OS line endings: one record per line, not the whole file as one bogus line; a raw
    carriage return inside a string of an LF file stays in its record."""
    records = [{"id": str(i), "text": f"record {i}"} for i in range(3)]
    mac = tmp_path / "mac.jsonl"
    mac.write_bytes(b"".join(json.dumps(r).encode() + b"\r" for r in records))
    evs = events(mac)
    assert [(type(e), e.text, e.source_offset) for e in evs] == [
        (Document, f"record {i}", i * len(json.dumps(records[0])) + i) for i in range(3)]
    assert sum(e.nbytes for e in evs) == mac.stat().st_size
    lf = tmp_path / "raw-cr-in-string.jsonl"
    lf.write_bytes(b'{"text": "a\rb"}\n{"text": "c"}\n')
    assert [e.text for e in events(lf)] == ["a\rb", "c"]


PRETTY = {"array": lambda rs: json.dumps(rs, indent=2),  # json.dump(records, f, indent=2)
          "array of lines": lambda rs: "[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]",
          "objects": lambda rs: "\n".join(json.dumps(r, indent=2) for r in rs)}  # jq . dump.jsonl


@pytest.mark.parametrize("layout", sorted(PRETTY))
@pytest.mark.parametrize("name", ["pretty.jsonl", "pretty.json"])
def test_pretty_printed_json_is_read_record_by_record(tmp_path, layout, name):
    """Pretty-printed JSON saved as JSON lines: its records, not one invalid_json error per line."""
    records = [{"id": str(i), "text": f"record {i}"} for i in range(3)]
    path = tmp_path / name
    path.write_text(PRETTY[layout](records) + "\n")
    evs = events(path)
    assert [(type(e), e.id, e.text) for e in evs] == [(Document, r["id"], r["text"]) for r in records]
    assert sum(e.nbytes for e in evs) == path.stat().st_size


def test_pretty_printed_json_broken_after_its_first_record_keeps_what_came_before(tmp_path):
    path = tmp_path / "pretty-broken.jsonl"
    first = json.dumps({"text": "first"}, indent=2)
    path.write_text(first + '\n{\n  "text": "second",\n  oops\n}\n{\n  "text": "third"\n}\n')
    evs = events(path)
    assert [(type(e), getattr(e, "reason", None), getattr(e, "docs", 1)) for e in evs] == [
        (Document, None, 1), (Broken, "invalid_json", 0)]
    assert evs[1].offset == len(first) and sum(e.nbytes for e in evs) == path.stat().st_size


def test_json_lines_whose_first_line_is_broken_stay_json_lines(tmp_path):
    """A cut first line is its own error; the lines after it are read, not taken for one pretty-printed value."""
    path = tmp_path / "cut-first-line.jsonl"
    path.write_bytes(b'{"text": "cut", "n": 1\n{"text": "second"}\n{"text": "third"}\n')
    assert [(type(e), getattr(e, "reason", None)) for e in events(path)] == [
        (Broken, "invalid_json"), (Document, None), (Document, None)]


def test_json_lines_after_blank_lines_stay_json_lines(tmp_path):
    """Blank lines before the first record do not make it span lines: a broken line later costs that
    line, not the rest of the file (read as pretty-printed JSON, it cost every record after it)."""
    path = tmp_path / "blank-first-lines.jsonl"
    path.write_bytes(b'\n \r\n{"text": "a"}\nbroken\n{"text": "c"}\n')
    assert [(type(e), getattr(e, "reason", None), getattr(e, "docs", 1)) for e in events(path)] == [
        (NotDocument, "blank_line", 0), (NotDocument, "blank_line", 0), (Document, None, 1),
        (Broken, "invalid_json", 1), (Document, None, 1)]


@pytest.mark.parametrize("layout", sorted(PRETTY))
@pytest.mark.parametrize("bad", [0, 2], ids=["first-record", "third-record"])
@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_a_byte_that_is_not_utf8_costs_its_pretty_printed_record_only(tmp_path, monkeypatch, layout, bad, chunk):
    """In the first record it sent a .jsonl to the line reader (an error per line); in another record
    it cost every record from there to the end of the file."""
    monkeypatch.setattr(json_text, "CHUNK", chunk)
    records = [{"id": str(i), "text": f"record {i} CJK"} for i in range(4)]
    data = (PRETTY[layout](records) + "\n").encode().replace(b"CJK", "条记录".encode())  # raw, not \\u escapes
    data = data.replace(f"record {bad} 条".encode(), f"record {bad} 条".encode() + b"\xff")
    path = tmp_path / "pretty-bad-byte.jsonl"
    path.write_bytes(data)
    evs = events(path)
    assert [(type(e), getattr(e, "reason", None), getattr(e, "docs", 1)) for e in evs] == [
        (Broken, "invalid_utf8", 1) if i == bad else (Document, None, 1) for i in range(4)]
    assert [e.text for e in evs if isinstance(e, Document)] == [f"record {i} 条记录" for i in range(4) if i != bad]
    bad_byte = data.index(b"\xff")
    assert evs[bad].offset == data.rindex(b"{", 0, bad_byte)
    assert f"byte 0xff in position {bad_byte - evs[bad].offset}:" in evs[bad].message
    assert sum(e.nbytes for e in evs) == len(data)


def test_a_character_cut_by_a_read_just_before_a_bad_byte_is_decoded_whole():
    """The decoder starts escaping bad bytes at the read that holds the first one, keeping the start
    of a character the read before cut."""
    reads = iter([b'["ab\xe6\x9d', b'\xa1\xff cd"]', b""])
    text = JsonText(lambda size: next(reads))
    text.more(1)
    text.at = 1
    value, end = text.value(100)
    assert value == "ab条\udcff cd"
    assert "byte 0xff in position 6:" in str(text.utf8_error(end))


def test_a_raw_carriage_return_in_a_first_line_over_the_limit_does_not_end_lines(tmp_path):
    """The limit's bytes hold the \r and no \n: the file was read as \r-ended lines, one bogus line."""
    first = json.dumps({"text": "x" * 100 + "CR" + "y" * 2000}).encode().replace(b"CR", b"\r") + b"\n"
    path = tmp_path / "long-first-line.jsonl"
    path.write_bytes(first + b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(3)))
    evs = events(path, max_record_bytes=1000)
    assert [(getattr(e, "reason", None), e.nbytes) for e in evs] == [("record_too_large", len(first))] + [
        (None, len(b'{"text": "doc 0"}\n'))] * 3


def test_a_value_cut_anywhere_by_the_end_of_what_is_read_is_read_on():
    """The decoder reports a cut -Infinity, false or \\u escape before the end of the text, and the
    first-value check took such a cut for a broken value (a pretty-printed file read line by line)."""
    value = ('{"a": [-Infinity, Infinity, NaN, true, false, null, -12.5e-3, 0, "x\\ud83d\\ude00\\u00e9\\n\\"",'
             ' {"b": {}}, [], ""], "c" : -0.0E+10 }')
    decoder = json.JSONDecoder()
    for end in range(len(value)):
        with pytest.raises(json.JSONDecodeError) as cut:
            decoder.raw_decode(value[:end])
        assert cut_short(cut.value), value[:end]
    with pytest.raises(json.JSONDecodeError) as broken:
        decoder.raw_decode(value[:20] + "x" * 20)
    assert not cut_short(broken.value)


def test_pretty_printed_json_whose_first_look_ends_inside_a_literal_is_read_record_by_record(tmp_path):
    """The first look at a file was 4 KiB; ending inside `false` it took the first object for broken."""
    before_pad, after_pad = '{\n  "text": "first",\n  "pad": "', '",\n  "flag": '
    first = before_pad + "p" * (4096 - 2 - len(before_pad + after_pad)) + after_pad + "false\n}\n"
    assert first.index("false") == 4096 - 2
    path = tmp_path / "pretty-literal.jsonl"
    path.write_text(first + json.dumps({"text": "second"}, indent=2) + "\n")
    assert [(type(e), e.text) for e in events(path)] == [(Document, "first"), (Document, "second")]


def test_a_nested_parquet_string_that_is_not_utf8_costs_its_row_not_the_row_group(tmp_path):
    """As for a top-level string column: inside a struct or a list, a bad text is its row's invalid_utf8
    error and another bad field keeps its record with \\xNN escapes."""
    path = tmp_path / "bad-nested-string.parquet"
    doc = pa.StructArray.from_arrays([string_array_unchecked([b"first", b"second", b"caf\xe9", b"fourth"]),
                                      string_array_unchecked([b"u0", b"u\xff1", b"u2", b"u3"])], names=["text", "url"])
    tags = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()),
                                    string_array_unchecked([b"a", b"b", b"c", b"d\xfe"]))
    pq.write_table(pa.table({"doc": doc, "tags": tags}), path)
    evs = events(path, FieldMap(text="doc.text", url="doc.url", subset="tags"))
    assert [(type(e), getattr(e, "reason", None), e.nbytes) for e in evs] == [
        (Document, None, 5), (Document, None, 6), (Broken, "invalid_utf8", 4), (Document, None, 6)]
    assert (evs[1].url, evs[2].offset, evs[3].text) == ("u\\xff1", 2, "fourth")


def test_parquet_batches_of_large_texts_are_bounded_by_bytes_not_rows(tmp_path, monkeypatch):
    """A row group of large texts comes in batches of about BATCH_BYTES, not of BATCH_ROWS rows (48
    texts of 8 MiB came in one batch: 2.5 GB at the peak)."""
    monkeypatch.setattr(parquet_source, "BATCH_BYTES", 64 << 10)
    path = tmp_path / "books.parquet"
    pq.write_table(pa.table({"text": [f"{i} " + "x" * (16 << 10) for i in range(20)]}), path, use_dictionary=False)
    batch_rows = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda self, **kw: (
        batch_rows.append(batch.num_rows) or batch for batch in iter_batches(self, **kw)))
    assert len(events(path)) == 20
    assert sum(batch_rows) == 20 and max(batch_rows) <= 4, batch_rows


def record_reads(monkeypatch) -> list[tuple[int, list[int]]]:
    """Each ParquetFile.iter_batches call: (its row groups, the rows of each batch it gave)."""
    reads = []
    iter_batches = pq.ParquetFile.iter_batches

    def recorded(self, **kw):
        reads.append((len(kw["row_groups"]), []))
        for batch in iter_batches(self, **kw):
            reads[-1][1].append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", recorded)
    return reads


def test_parquet_texts_repeated_through_a_dictionary_are_bounded_by_their_decoded_bytes(tmp_path, monkeypatch):
    """The footer counts a dictionary value once: 100 rows of one 8 MiB text came in one batch (peak RSS
    2.2-2.7 GB, now 0.25 GB), and 50 row groups of 20 rows of one 1 MiB text in runs of 51 MiB by the
    footer, 1 GB decoded (2.1-2.4 GB, now 0.34-0.37 GB)."""
    monkeypatch.setattr(parquet_source, "BATCH_BYTES", 64 << 10)
    monkeypatch.setattr(parquet_source, "RUN_BYTES", 64 << 10)
    reads = record_reads(monkeypatch)
    text = "x" * (16 << 10)
    for group_rows in (20, 5):
        path = tmp_path / f"groups-of-{group_rows}.parquet"
        pq.write_table(pa.table({"text": [text] * 20}), path, row_group_size=group_rows)
        assert pq.ParquetFile(path).metadata.row_group(0).total_byte_size < 2 * len(text)
        reads.clear()
        assert [e.text for e in events(path)] == [text] * 20
        assert max(rows for _, batches in reads for rows in batches) <= 4, reads
        assert max(groups for groups, _ in reads) == 1, reads


def test_parquet_dictionaries_of_small_values_keep_batches_large(tmp_path, monkeypatch):
    """A column chunk's size bounds its dictionary's values too loosely for a large row group (one
    row a batch here): the dictionary is read for its largest value."""
    monkeypatch.setattr(parquet_source, "BATCH_BYTES", 64 << 10)
    reads = record_reads(monkeypatch)
    path = tmp_path / "short-texts.parquet"
    pq.write_table(pa.table({"text": [f"text number {i}" for i in range(2048)]}), path)
    assert len(events(path)) == 2048
    assert [batches for groups, batches in reads if batches != [1]] == [[1024, 1024]], reads


def test_parquet_text_sizes_come_from_the_column_not_from_encoding_each_text(tmp_path, monkeypatch):
    """Encoding each text to count its bytes cost 8% of the reading CPU in English, 24% in Chinese
    (docs/benchmarks.md, the eighteenth session's reader checks)."""
    path = tmp_path / "sizes.parquet"
    pq.write_table(pa.table({"text": ["abc", "é" * 3, None], "meta": [{"text": "中文"}, {"text": "x"}, None]}), path)
    sizes_given = []
    object_event = parquet_source.object_event
    monkeypatch.setattr(parquet_source, "object_event", lambda obj, fields, offset, nbytes: (
        sizes_given.append(nbytes) or object_event(obj, fields, offset, nbytes)))
    assert [e.nbytes for e in events(path)] == [3, 6, 0]
    assert [e.nbytes for e in events(path, FieldMap(text="meta.text"))] == [6, 1, 0]
    assert sizes_given == [3, 6, None, 6, 1, None]
