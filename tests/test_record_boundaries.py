"""Record boundaries in the JSON-lines, JSON-array and Parquet readers and the format a file name
says: a record over max_record_bytes, a damaged Parquet row group or a byte order mark costs
that record at most, the records around it are read, and every byte and document is accounted."""
from __future__ import annotations

import codecs
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import format_from_name, json_array, json_text, read_file
from pipeline.ingest.events import Broken, Document
from pipeline.ingest.jsonl import FieldMap


def events(path, fmt="auto", max_record_bytes=1 << 20):
    return list(read_file(str(path), fmt, FieldMap(), max_record_bytes))


def outline(evs) -> list[tuple]:
    """(id or reason, offset, docs) per event."""
    return [(e.id, e.source_offset, 1) if isinstance(e, Document) else (e.reason, e.offset, e.docs) for e in evs]


def line(doc_id: str, text: str = "x") -> bytes:
    return json.dumps({"id": doc_id, "text": text}, ensure_ascii=False).encode() + b"\n"


def array(*elements: dict) -> bytes:
    return json.dumps(list(elements), ensure_ascii=False).encode()


def read_in_chunks(monkeypatch, chunk: int) -> None:
    """The JSON-values reader reads `chunk` bytes at a time (its decoded text, and its bracket count)."""
    for module in (json_array, json_text):
        monkeypatch.setattr(module, "CHUNK", chunk)


def test_a_line_of_max_plus_one_bytes_is_one_error_and_the_next_line_is_read(tmp_path):
    max_bytes = 100
    boundary = json.dumps({"id": "big", "text": "x" * 75}).encode() + b"\n"  # newline included: max + 1
    longer = json.dumps({"id": "longer", "text": "x" * 150}).encode() + b"\n"
    assert len(boundary) == max_bytes + 1
    lines = [line("r1"), boundary, line("r2"), longer, line("r3")]
    path = tmp_path / "boundary.jsonl"
    path.write_bytes(b"".join(lines))
    evs = events(path, max_record_bytes=max_bytes)
    starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
    assert outline(evs) == [("r1", starts[0], 1), ("record_too_large", starts[1], 1), ("r2", starts[2], 1),
                            ("record_too_large", starts[3], 1), ("r3", starts[4], 1)]
    assert [e.nbytes for e in evs] == [len(x) for x in lines]


@pytest.mark.parametrize("text", ["x" * 5000, "中" * 400], ids=["ascii", "cjk-bytes-over-chars-under"])
def test_an_array_element_over_the_limit_is_one_error_and_the_next_elements_are_read(tmp_path, text):
    data = array({"id": "a", "text": "first"}, {"id": "big", "text": text}, {"id": "b", "text": "after"},
                 {"id": "c", "text": "last"})
    path = tmp_path / "big.json"
    path.write_bytes(data)
    evs = events(path, max_record_bytes=1000)
    assert [x[0] for x in outline(evs)] == ["a", "record_too_large", "b", "c"]
    assert evs[1].docs == 1 and evs[1].offset == data.index(b'{"id": "big"')
    assert sum(e.nbytes for e in evs) == len(data)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_an_element_over_the_limit_and_over_what_is_read_is_skipped_by_streaming(tmp_path, monkeypatch, chunk):
    # Brackets, quotes and backslashes inside its strings, and multi-byte characters, at every chunk boundary.
    read_in_chunks(monkeypatch, chunk)
    big = {"id": "big", "text": 'a]}\\"[{中' * 300, "nested": [{"k": ["]", "\\"]}] * 20}
    data = array({"id": "a", "text": "first"}, big, {"id": "b", "text": "after [\"]"}) + b"\n"
    path = tmp_path / "big.json"
    path.write_bytes(data)
    evs = events(path, max_record_bytes=200)
    assert [x[0] for x in outline(evs)] == ["a", "record_too_large", "b"]
    assert evs[1].docs == 1 and evs[2].text == 'after ["]'
    assert sum(e.nbytes for e in evs) == len(data)


def test_an_element_that_is_not_json_is_not_called_too_large(tmp_path, monkeypatch):
    # Its brackets close within the limit: the array is broken there, as in a small file.
    read_in_chunks(monkeypatch, 16)
    good = b",".join(json.dumps({"id": f"g{i}", "text": "y" * 40}).encode() for i in range(10))
    data = b'[{"id": "a", "text": "first"}, {"id": "bad", "text": 1 x}, ' + good + b"]"
    path = tmp_path / "broken.json"
    path.write_bytes(data)
    evs = events(path, max_record_bytes=100)
    assert outline(evs) == [("a", 1, 1), ("invalid_json", len(b'[{"id": "a", "text": "first"}'), 0)]
    assert sum(e.nbytes for e in evs) == len(data)


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_whitespace_at_the_end_of_what_is_read_is_counted(tmp_path, monkeypatch, chunk):
    # A run of whitespace that empties the decoded text (after an element, after the closing ]) is counted whole.
    read_in_chunks(monkeypatch, chunk)
    data = b"[\n" + b",\n        ".join(line(f"r{i}").strip() for i in range(20)) + b"\n]\n\n"
    path = tmp_path / "pretty.json"
    path.write_bytes(data)
    evs = events(path)
    assert [e.id for e in evs] == [f"r{i}" for i in range(20)]
    assert sum(e.nbytes for e in evs) == len(data)


def test_format_from_name_compares_whole_name_parts():
    assert {name: format_from_name(f"gs://bucket/dir.warc/{name}") for name in [
        "forum.archive.jsonl", "game.warcraft.jsonl", "zh.wetland-news.jsonl", "news.arctic.parquet.jsonl",
        "x.arcade.ndjson", "CC-MAIN-2016-00000.ec2.internal.warc.wet.gz", "a.warc.gz", "a.WARC", "b.wet",
        "IAH-2008-blackbook.arc.gz", "dump.jsonl.zst", "d.jsonl.gz", "t.parquet", "w.json", "w.json.gz",
        "archive", "warc.txt"]} == {
        "forum.archive.jsonl": "jsonl", "game.warcraft.jsonl": "jsonl", "zh.wetland-news.jsonl": "jsonl",
        "news.arctic.parquet.jsonl": "jsonl", "x.arcade.ndjson": "jsonl",
        "CC-MAIN-2016-00000.ec2.internal.warc.wet.gz": "wet", "a.warc.gz": "warc", "a.WARC": "warc",
        "b.wet": "wet", "IAH-2008-blackbook.arc.gz": "arc", "dump.jsonl.zst": "jsonl", "d.jsonl.gz": "jsonl",
        "t.parquet": "parquet", "w.json": None, "w.json.gz": None, "archive": None, "warc.txt": None}


@pytest.mark.parametrize("name", ["forum.archive.jsonl", "game.warcraft.jsonl"])
def test_json_lines_named_like_a_crawl_format_are_read(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"".join(line(f"r{i}") for i in range(5)))
    assert [e.id for e in events(path)] == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize("damage", ["page-header", "string-bytes"])
def test_a_damaged_row_group_is_one_error_for_its_rows(tmp_path, damage):
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(40)], "text": [f"row {i} " + "z" * 50 for i in range(40)]}),
                   path, row_group_size=10, compression="none", use_dictionary=False)
    data = bytearray(path.read_bytes())
    if damage == "page-header":  # row group 1's first page of text
        start = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset
        data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    else:  # a row of row group 1 that is no longer UTF-8
        data[data.index(b"row 15 ") + 8] = 0xFF
    path.write_bytes(bytes(data))
    evs = events(path)
    (broken,) = [e for e in evs if isinstance(e, Broken)]
    if damage == "page-header":
        assert (broken.reason, broken.offset, broken.docs) == ("corrupt_parquet", 10, 10)
        assert "row group 1" in broken.message and broken.nbytes > 0
        lost = range(10, 20)
    else:  # a string that is not UTF-8 costs its row only
        assert (broken.reason, broken.offset, broken.docs) == ("invalid_utf8", 15, 1)
        lost = [15]
    assert [(e.id, e.source_offset) for e in evs if isinstance(e, Document)] == \
        [(f"r{i}", i) for i in range(40) if i not in lost]


@pytest.mark.parametrize("name,fmt,body", [
    ("bom.jsonl", "auto", b"".join(line(f"r{i}", f"第{i}段") for i in range(3))),
    ("bom-lines.json", "auto", b"".join(line(f"r{i}", f"第{i}段") for i in range(3))),
    ("bom.json", "auto", array(*({"id": f"r{i}", "text": f"第{i}段"} for i in range(3)))),
    ("bom.json", "json", array(*({"id": f"r{i}", "text": f"第{i}段"} for i in range(3)))),
    ("bom.jsonl", "auto", b"\n" + b"".join(line(f"r{i}", f"第{i}段") for i in range(3))),
], ids=["jsonl", "json-lines-sniffed", "array-sniffed", "array-format-json", "jsonl-blank-first-line"])
def test_a_byte_order_mark_costs_no_record(tmp_path, name, fmt, body):
    path = tmp_path / name
    path.write_bytes(codecs.BOM_UTF8 + body)
    evs = events(path, fmt)
    assert [e.id for e in evs if isinstance(e, Document)] == ["r0", "r1", "r2"]
    assert not [e for e in evs if isinstance(e, Broken)]
    assert sum(e.nbytes for e in evs) == len(codecs.BOM_UTF8 + body)
