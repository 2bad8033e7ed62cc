"""Charset precedence on small synthetic pages: WHATWG labels, damaged bytes, WET records, a single-byte
header against a CJK <meta>, GBK's euro sign."""
from __future__ import annotations

import codecs

import pytest

from pipeline.ingest import charset

ZH = "这是一个关于中文编码的测试段落，包含常用汉字和标点符号。" * 8
ZH_HANT = "這是一個關於中文編碼的測試段落，包含常用漢字和標點符號。" * 8
FR = "Le cœur de la forêt était déjà éclairé à l'été, où règne la sérénité. " * 5


def page(meta: str, body: str, enc: str = "utf-8") -> bytes:
    return f"<html><head>{meta}<title>t</title></head><body><p>{body}</p></body></html>".encode(enc)


@pytest.mark.parametrize("label", ["utf-16", "utf-16le", "utf-16be"])
def test_utf16_in_markup_means_utf8(label):
    data = page(f'<meta charset="{label}">', ZH)
    data += b" " * (len(data) % 2)  # an even length, which UTF-16 decoders accept
    assert charset.decode(data) == (data.decode("utf-8"), "utf-8")


@pytest.mark.parametrize("label", ["hex", "base64", "zip", "rot13", "uu", "utf-7"])
def test_non_web_codecs_are_no_labels(label):
    data = page(f'<meta charset="{label}">', "id +ZeVnLA-")  # what UTF-7 would read as two CJK characters
    assert charset.decode(data) == (data.decode("utf-8"), "utf-8")
    assert charset.decode(data, f"text/html; charset={label}") == (data.decode("utf-8"), "utf-8")


@pytest.mark.parametrize("label,enc,text", [
    ("x-mac-cyrillic", "mac_cyrillic", "Привет, мир"),
    ("ks_c_5601-1989", "cp949", "안녕하세요 세계"),
])
def test_whatwg_labels_python_lacks(label, enc, text):
    assert charset.decode(page("", text, enc), f"text/html; charset={label}")[0] == page("", text).decode()
    assert all(codecs.lookup(d.split("+")[0])._is_text_encoding for chain in charset._CHAINS.values() for d in chain)


def test_a_broken_decoder_entry_does_not_raise(monkeypatch):
    monkeypatch.setitem(charset._CHAINS, "x-broken", ("no-such-codec",))
    data = page("", ZH)
    assert charset.decode(data, "text/html; charset=x-broken") == (data.decode("utf-8"), "utf-8")


@pytest.mark.parametrize("content_type,meta", [("text/html; charset=utf-8", '<meta charset="utf-8">'),
                                               ("text/html", "")])  # declared, or only the UTF-8 guess
def test_one_damaged_byte_keeps_utf8(content_type, meta):
    data = page(meta, FR).replace(b"<p>", b"<p>\xff", 1)
    text, used = charset.decode(data, content_type)
    assert used == "utf-8" and FR in text and text.count("\ufffd") == 1


def test_damaged_legacy_pages_keep_their_decoder():
    # Big5 cut inside its last character keeps the HKSCS characters cp950 lacks
    hk = page('<meta charset="big5">', "香港" + "\u4f60\u5605" + ZH_HANT, "big5hkscs")[:-1]
    text, used = charset.decode(hk[:hk.rindex(b"</p>")] + "字".encode("cp950")[:1])
    assert used == charset.BIG5_WEB and "\u4f60\u5605" in text and text.count("\ufffd") == 1
    # a wrong utf-8 header, a right <meta>: one damaged byte costs one character, not the page
    gbk = page('<meta charset="gbk">', ZH, "gbk")
    text, used = charset.decode(gbk.replace(b"<p>", b"<p>\xff", 1), "text/html; charset=utf-8")
    assert used == "gb18030" and ZH in text and text.count("\ufffd") == 1
    # GBK labelled utf-8 and nothing else still goes to detection
    gbk = page("", ZH, "gbk")
    assert charset.decode(gbk, "text/html; charset=utf-8") == (gbk.decode("gb18030"), "gb18030")
    # a windows-1252 page labelled utf-8: every non-ASCII character fails, so detection still decides
    latin = page("", FR.replace("œ", "oe"), "cp1252")
    assert charset.decode(latin, "text/html; charset=utf-8")[0] == latin.decode("cp1252")


def test_wet_records_are_utf8_whatever_they_quote():
    text = 'Wie man <meta charset="iso-8859-1"> setzt. Größe, Übung, café.\n'
    assert charset.decode(text.encode(), "text/plain", default="utf-8") == (text, "utf-8")
    damaged, used = charset.decode(text.encode() + b"\xff", "text/plain", default="utf-8")
    assert used == "utf-8" and damaged.startswith(text)


@pytest.mark.parametrize("header", ["ISO-8859-1", "windows-1251", "koi8-r"])
def test_cjk_meta_beats_a_single_byte_header(header):
    gb = page('<meta http-equiv="Content-Type" content="text/html; charset=gb2312">', ZH, "gb2312")
    assert charset.decode(gb, f"text/html; charset={header}") == (gb.decode("gb18030"), "gb18030")
    big5 = page('<meta charset="big5">', ZH_HANT, "cp950")
    assert charset.decode(big5, f"text/html; charset={header}")[0] == big5.decode("cp950")
    # the header keeps its place when the bytes are not what the <meta> says
    latin = page('<meta charset="gb2312">', "café au lait, crème brûlée", "cp1252")
    assert charset.decode(latin, "text/html; charset=windows-1251")[1] == "cp1251"


def test_gbk_euro_sign():
    data = page('<meta charset="gbk">', "价格：EURO100。" + ZH, "gbk")
    expected = data.decode("gbk").replace("EURO", "€")
    assert charset.decode(data.replace(b"EURO", b"\x80"), "text/html; charset=gbk") == (expected, "gb18030")
    # the euro is the only byte GB18030 lacks that is let through: UTF-8 labelled gbk still fails as GBK
    utf8 = page("", "中 文 " * 50)
    assert charset.decode(utf8, "text/html; charset=gbk") == (utf8.decode(), "utf-8")
