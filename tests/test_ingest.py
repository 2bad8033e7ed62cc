"""Ingest readers on real crawl data: byte accounting, both gzip layouts, record types, offsets,
HTML main text, character sets, JSON-lines presets, Parquet (no engine; see test_ingest_stage.py)."""
from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.archiveiterator import ArchiveIterator

from pipeline.ingest import charset, read_file
from pipeline.ingest.events import Broken, Document, Empty, NotDocument
from pipeline.ingest.html import html_to_text
from pipeline.ingest.jsonl import PRESETS, FieldMap

MAX = 64 << 20
HAN = re.compile(r"[\u4e00-\u9fff]")


def events(path, fmt="auto", fields=FieldMap(), max_record_bytes=MAX):
    return list(read_file(str(path), fmt, fields, max_record_bytes))


def docs(path, **kw):
    return [e for e in events(path, **kw) if isinstance(e, Document)]


def reasons(evs):
    return Counter(getattr(e, "reason", type(e).__name__) for e in evs)


def decodable_bytes(path: Path) -> int:
    """Uncompressed bytes of every gzip member that decodes, and the compressed bytes of a member cut
    before it gave any output (computed without the reader)."""
    data = path.read_bytes()
    if not data.startswith(b"\x1f\x8b"):
        return len(data)
    total = 0
    while data:
        d = zlib.decompressobj(31)
        try:
            out = len(d.decompress(data))
        except zlib.error:
            break
        total += out
        if not d.eof:
            total += 0 if out else len(data)
            break
        data = d.unused_data
    return total


def crawl_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "crawl").rglob("*") if p.is_file() and "LICENSE" not in p.name)


def test_every_crawl_byte_is_accounted_for(shared_data):
    files = crawl_files(shared_data)
    assert len(files) >= 25
    for path in files:
        evs = events(path)
        assert sum(e.nbytes for e in evs) == decodable_bytes(path), path.name
        assert all(e.nbytes >= 0 for e in evs)


def test_both_gzip_layouts_give_the_same_documents(shared_data, tmp_path):
    per_record = shared_data / "crawl/warc/cc-main-2020-34-sample.warc.gz"
    one_stream = tmp_path / "one-stream.warc.gz"
    one_stream.write_bytes(gzip.compress(gzip.decompress(per_record.read_bytes())))
    a, b = docs(per_record), docs(one_stream)
    assert len(a) == 16
    assert [(d.id, d.text, d.url) for d in a] == [(d.id, d.text, d.url) for d in b]
    # The single-stream WET files of the shared data read too (warcio alone refuses them).
    assert len(docs(shared_data / "crawl/wet/cc-main-2016-50-filter_test_1.wet.gz")) == 25


def test_offsets_point_at_the_records_gzip_member(shared_data):
    path = shared_data / "crawl/warc/cc-main-2020-34-sample.warc.gz"
    data = path.read_bytes()
    for d in docs(path):
        record = zlib.decompressobj(31).decompress(data[d.source_offset:])
        assert record.startswith(b"WARC/1.0"), d.source_offset
        assert d.id.encode() in record


def test_record_types_are_counted_per_reason(shared_data):
    sample = reasons(events(shared_data / "crawl/warc/cc-main-2020-34-sample.warc.gz"))
    assert sample == {"Document": 16, "warc_request": 17, "metadata": 16, "warcinfo": 1}
    iah = reasons(events(shared_data / "crawl/warc/IAH-urls-wget.warc.gz"))
    assert iah["non_html_image"] == 3 and iah["http_3xx"] == 9 and iah["warc_request"] == 16
    assert reasons(events(shared_data / "crawl/warc/example.warc.gz"))["revisit"] == 1
    assert reasons(events(shared_data / "crawl/warc/post-test.warc.gz"))["non_html_json"] == 3


def test_document_fields(shared_data):
    (cc,) = docs(shared_data / "crawl/warc/cc-2019-single-record.warc.gz")
    assert cc.id.startswith("urn:uuid:") and cc.url.startswith("http") and cc.crawl_date.startswith("20")
    wget = docs(shared_data / "crawl/warc/wget-2024-academic-en.warc.gz")
    assert len(wget) == 22
    assert all(not d.url.startswith("<") for d in wget)  # wget's <...> around WARC-Target-URI is removed
    wet = docs(shared_data / "crawl/wet/cc-main-2024-22-whirlwind.warc.wet.gz")
    assert len(wet) == 1 and "\n" in wet[0].text


def test_html_main_text_keeps_paragraphs_and_drops_boilerplate():
    page = """<html><head><title>t</title><style>p{color:red}</style></head><body>
    <nav><ul><li><a href=/>Home</a></li><li><a href=/news>News</a></li><li><a href=/shop>Shop</a></li></ul></nav>
    <div class="cookie-banner">We use cookies. Accept all cookies.</div>
    <main><article><h1>River notes</h1>
    <p>The river rose by two metres overnight and the meadow flooded as it does most springs.</p>
    <p>By the afternoon the water had started to fall, and the paths were open again by the weekend.</p>
    </article></main><footer class="footer">Copyright 2024 Example. Privacy | Terms</footer>
    <script>var tracking = 1;</script></body></html>"""
    assert html_to_text(page).splitlines() == [
        "River notes",
        "The river rose by two metres overnight and the meadow flooded as it does most springs.",
        "By the afternoon the water had started to fall, and the paths were open again by the weekend."]


def test_html_extraction_matches_reference_article_text(shared_data):
    """The scrapinghub benchmark's reference bodies: the first paragraph comes out on a line of its own."""
    reference = {json.loads(l)["id"].split("-")[1]: json.loads(l)["text"]
                 for l in (shared_data / "text/en-news-scrapinghub.jsonl").read_text().splitlines()}
    checked = 0
    for page in sorted((shared_data / "html/en-news").glob("*.html.gz"))[:8]:
        expected = reference.get(page.name[:16])
        if expected is None:
            continue
        text, _ = charset.decode(gzip.decompress(page.read_bytes()), "text/html")
        first = expected.split("\n")[0].strip()
        assert first[:60] in html_to_text(text), page.name
        checked += 1
    assert checked >= 5


# ------------------------------------------------------------------------------------------
# Character sets


@pytest.mark.parametrize("name,label", [
    ("sighan2005-pku_test.gbk.txt", "gb2312"),  # GBK bytes labelled gb2312, as servers do
    ("sighan2005-pku_test.gbk.txt", None),
    ("sighan2005-as_test.big5.txt", "big5"),
    ("sighan2005-as_test.big5.txt", None),
    ("sighan2005-cityu_test.big5hkscs.txt", "big5"),  # HKSCS characters in a page labelled big5
    ("sighan2005-cityu_test.big5hkscs.txt", "big5-hkscs"),
])
def test_legacy_encodings_match_their_utf8_twins(shared_data, name, label):
    raw = (shared_data / "encodings" / name).read_bytes()
    twin = (shared_data / "encodings" / (name.split(".")[0] + ".utf8.txt")).read_bytes().decode("utf-8-sig")
    text, _ = charset.decode(raw, f"text/html; charset={label}" if label else "text/html")
    assert text == twin


@pytest.mark.parametrize("feeds", ["feeds-gb2312", "feeds-big5"])
def test_legacy_feeds_decode_without_replacement(shared_data, feeds):
    files = sorted((shared_data / "encodings" / feeds).iterdir())
    assert len(files) > 15
    for path in files:
        text, used = charset.decode(path.read_bytes())
        assert "\ufffd" not in text, path.name
        assert used in ("gb18030", "cp950", "cp950+big5hkscs"), (path.name, used)
        assert len(HAN.findall(text)) > 10, path.name


def test_gbk_pages_of_the_commoncrawl_warc(shared_data):
    path = shared_data / "crawl/warc/cc-main-2020-34-sample.warc.gz"
    gbk_urls = {}
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type != "response":
                continue
            payload = rec.content_stream().read()
            m = re.search(rb"charset=[\"']?(gbk|gb2312)", payload[:4096], re.I)
            if m or "gb2312" in (rec.http_headers.get_header("Content-Type") or "").lower():
                gbk_urls[rec.rec_headers.get_header("WARC-Target-URI")] = html_to_text(payload.decode("gb18030"))
    assert len(gbk_urls) >= 5
    by_url = {d.url: d for d in docs(path)}
    for url, expected in gbk_urls.items():
        assert by_url[url].text == expected and "\ufffd" not in expected
    assert sum(len(HAN.findall(text)) > 10 for text in gbk_urls.values()) >= 4


def test_cyrillic_and_euc_jp_pages(shared_data):
    sample = docs(shared_data / "crawl/warc/cc-main-2020-34-sample.warc.gz")
    ru = [d for d in sample if ".ru/" in d.url]
    assert ru and all(re.search("[а-яА-Я]{5}", d.text) and "\ufffd" not in d.text for d in ru)
    jp = docs(shared_data / "crawl/broken/clueweb09-quirk-eucjp.warc.gz")
    assert len(jp) == 29 and all(re.search("[\u3040-\u30ff]", d.text) and "\ufffd" not in d.text for d in jp)


def test_charset_order_header_then_meta_then_detection():
    body = "<html><head><meta charset=gbk></head><body><p>中文网页</p></body></html>".encode("gbk")
    assert charset.decode(body)[1] == "gb18030"  # the meta tag
    assert charset.decode(body, "text/html; charset=utf-8")[1] == "gb18030"  # a wrong header falls back
    latin = "<p>café crème</p>".encode("cp1252")
    assert charset.decode(latin, "text/html; charset=iso-8859-1") == ("<p>café crème</p>", "cp1252")


# ------------------------------------------------------------------------------------------
# JSON lines and Parquet


def test_dolma_preset(shared_data):
    found = docs(shared_data / "jsonl/cc_en_head-0091.jsonl.gz", fields=PRESETS["dolma"])
    assert len(found) == 10
    assert all(d.id and d.crawl_date and d.text for d in found)


def test_ccnet_preset(shared_data):
    found = docs(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", fields=PRESETS["ccnet"])
    assert len(found) == 100
    assert all(d.id.startswith("sha1:") and d.url.startswith("http") and d.crawl_date for d in found)


def test_jsonl_compressions_read_the_same(tmp_path):
    lines = b"".join(json.dumps({"id": str(i), "text": f"document {i}", "url": f"u{i}"}).encode() + b"\n"
                     for i in range(50))
    (tmp_path / "a.jsonl").write_bytes(lines)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    results = [[(d.id, d.text, d.source_offset) for d in docs(tmp_path / n)] for n in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst")]
    assert results[0] == results[1] == results[2] and len(results[0]) == 50


def test_parquet_source(tmp_path):
    table = pa.table({"content": ["first text", "", "third text"], "meta": [{"link": "u1"}, {"link": "u2"}, None]})
    pq.write_table(table, tmp_path / "dump.parquet")
    evs = events(tmp_path / "dump.parquet", fields=FieldMap(text="content", id=None, url="meta.link"))
    assert [type(e) for e in evs] == [Document, Empty, Document]
    assert evs[0].url == "u1" and evs[2].source_offset == 2 and evs[2].url is None
    assert sum(e.nbytes for e in evs) == len("first text") + len("third text")


def test_non_documents_are_not_errors(shared_data):
    evs = events(shared_data / "crawl/warc/IAH-urls-wget.warc.gz")
    assert not [e for e in evs if isinstance(e, Broken)]
    assert all(e.docs == 1 for e in evs if isinstance(e, NotDocument))


def test_json_array_files_wudao_layout(tmp_path):
    rows = [{"id": i, "uniqueKey": f"key-{i}", "title": "标题", "content": f"第{i}篇文章的内容。" * 20, "dataType": "新闻"}
            for i in range(6)]
    pretty = json.dumps(rows, ensure_ascii=False, indent=2).encode()
    (tmp_path / "pretty.json").write_bytes(pretty)
    (tmp_path / "compact.json.gz").write_bytes(gzip.compress(json.dumps(rows, ensure_ascii=False).encode()))
    for name in ("pretty.json", "compact.json.gz"):
        evs = events(tmp_path / name, fields=PRESETS["wudao"])
        assert [e.id for e in evs] == [f"key-{i}" for i in range(6)]
        assert sum(e.nbytes for e in evs) == decodable_bytes(tmp_path / name)
    first = events(tmp_path / "pretty.json", fields=PRESETS["wudao"])[1]
    assert pretty[first.source_offset:].startswith(b"{") and b'"key-1"' in pretty[first.source_offset:][:200]
    (tmp_path / "cut.json").write_bytes(pretty[:-100])  # an array cut in its last element
    evs = events(tmp_path / "cut.json", fields=PRESETS["wudao"])
    assert [type(e) for e in evs] == [Document] * 5 + [Broken] and evs[-1].docs == 0
    assert sum(e.nbytes for e in evs) == len(pretty) - 100
    (tmp_path / "mixed.json").write_bytes(b'[{"content": "ok"}, 42, {"content": " "}]')
    assert [reasons([e]).most_common(1)[0][0] for e in events(tmp_path / "mixed.json", fields=PRESETS["wudao"])] == \
        ["Document", "invalid_json", "Empty"]


def arc_record(url: str, mime: str, body: bytes) -> bytes:
    return f"{url} 93.184.216.34 20080430204826 {mime} {len(body)}\n".encode() + body + b"\n"


def test_arc_files(tmp_path):
    """ARC v1 (Internet Archive; CommonCrawl before 2013): no record ids, so ids come from file + offset."""
    desc = b"1 0 Internet Archive\nURL IP-address Archive-date Content-type Archive-length\n\n"
    html = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
            b"<html><body><main><p>An old page kept in an ARC file.</p></main></body></html>")
    records = [f"filedesc://t.arc 0.0.0.0 20080430204825 text/plain {len(desc)}\n".encode() + desc + b"\n",
               arc_record("http://example.com/", "text/html", html),
               arc_record("http://example.com/a.gif", "image/gif", b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n\r\nGIF89a"),
               b"a line that is no record header\n",
               arc_record("http://example.com/2", "text/html", html)]
    (tmp_path / "t.arc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))
    evs = events(tmp_path / "t.arc.gz")
    assert [getattr(e, "reason", "doc") for e in evs] == ["warcinfo", "doc", "non_html_image", "corrupt_header", "doc"]
    assert sum(e.nbytes for e in evs) == len(b"".join(records))
    page = evs[1]
    assert page.id is None and page.text == "An old page kept in an ARC file." and page.crawl_date == "2008-04-30T20:48:26Z"


def test_the_list_fallback_setting_reaches_extraction(shared_data):
    from pipeline.stages.ingest import IngestSection

    path = shared_data / "crawl/warc/cc-main-2024-22-whirlwind.warc.gz"
    texts = {}
    for fallback in (False, True):
        extractor = IngestSection(html_list_fallback=fallback).html_extractor()
        (page,) = [e for e in read_file(str(path), "auto", FieldMap(), MAX, extractor) if isinstance(e, Document)]
        texts[fallback] = page.text
    assert "Ilesia parroquial de l'Asunción" in texts[True] and "Ilesia parroquial" not in texts[False]
