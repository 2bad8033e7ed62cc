"""Ingest keeps the page's title (the `title` column quality's title rule reads): a JSON line's
title field (configurable, preset per dump layout), a Parquet column, a WARC page's <title>; null
where the source has none (WET, a line without the field or with a value that is not a string)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest import read_file
from pipeline.ingest.events import Document, Empty
from pipeline.ingest.jsonl import PRESETS, FieldMap
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.ingest import EventRouter, SourceSection

MAX = 64 << 20


def documents(path, fields=FieldMap(), fmt="auto") -> list[Document]:
    return [e for e in read_file(str(path), fmt, fields, MAX) if isinstance(e, (Document, Empty))]


def test_json_lines_keep_the_title_field(tmp_path):
    lines = [{"text": "one", "title": "A headline_Some site"}, {"text": "two", "title": 5},
             {"text": "three"}, {"text": "", "title": "an empty page"}]
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines), encoding="utf-8")
    assert [d.title for d in documents(path)] == ["A headline_Some site", None, None, "an empty page"]
    assert isinstance(documents(path)[3], Empty)


def test_presets_and_title_field_name_where_the_title_is(tmp_path):
    ccnet = {"digest": "sha1:x", "raw_content": "正文", "url": "http://a.cn/", "date_download": "2021",
             "title": "标题_站名"}
    dolma = {"id": "d1", "text": "body", "created": "2020", "metadata": {"url": "http://b.org/", "title": "Nested"}}
    own = {"content": "body", "headline": "Mine", "title": "not this one"}
    for name, record in (("ccnet", ccnet), ("dolma", dolma), ("own", own)):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [d.title for d in documents(tmp_path / "ccnet.jsonl", PRESETS["ccnet"])] == ["标题_站名"]
    assert [d.title for d in documents(tmp_path / "dolma.jsonl", PRESETS["dolma"])] == ["Nested"]
    source = SourceSection(name="own", paths=[str(tmp_path / "own.jsonl")], text_field="content",
                           title_field="headline")
    assert [d.title for d in documents(tmp_path / "own.jsonl", source.field_map())] == ["Mine"]
    assert SourceSection(name="default", paths=["x"]).field_map().title == "title"


def test_parquet_title_column(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"], "title": ["T", None]}), tmp_path / "dump.parquet")
    assert [d.title for d in documents(tmp_path / "dump.parquet")] == ["T", None]


def test_warc_pages_keep_their_title_and_wet_records_have_none(shared_data):
    [page] = documents(shared_data / "crawl/warc/cc-main-2024-22-whirlwind.warc.gz")
    assert page.title == "Escopete - Biquipedia, a enciclopedia libre"
    [text] = documents(shared_data / "crawl/wet/cc-main-2024-22-whirlwind.warc.wet.gz")
    assert text.url == page.url and text.title is None


def test_the_ingest_row_has_the_title_column():
    router = EventRouter(None, SourceSection(name="s", paths=["x"]), "file.jsonl")
    row = router._row(Document("r1", "text", None, 0, None, 5, "A title\x00"), "text")
    table = pa.Table.from_pylist([row], DOC_SCHEMA)
    assert table.column("title").to_pylist() == ["A title"]  # control characters removed, as in every field
    untitled = router._row(Document("r2", "text", None, 10, None, 5), "text")
    assert pa.Table.from_pylist([untitled], DOC_SCHEMA).column("title").to_pylist() == [None]
