"""Bytes of a web page to Unicode: the HTTP header's charset, then the page's own declaration
(<meta charset>, <meta http-equiv>, <?xml encoding?>), then detection.

Declared labels map to the decoders browsers really use (WHATWG): GB2312 and GBK pages are decoded
as GB18030, their superset, because servers label GBK and GB18030 text "gb2312"; Big5 is decoded as
cp950 (the Microsoft table Taiwanese text is written in), with Big5-HKSCS for the Hong Kong
characters cp950 lacks; ISO-8859-1 and ASCII as windows-1252. A label whose decoder fails on the bytes is
followed by the next source (a wrong HTTP header is common; the page's own <meta> is then tried),
then detection (uchardet, through resiliparse), before giving up and replacing bad bytes.
"""
from __future__ import annotations

import codecs
import re

from resiliparse.parse.encoding import detect_encoding

# cp950 for every character it has, Big5-HKSCS for the Hong Kong ones it lacks: the two tables
# disagree on a few common symbols (A145 is U+2027 in cp950, U+2022 in big5hkscs), and text
# written on Windows means the cp950 ones.
BIG5_WEB = "cp950+big5hkscs"


def _hkscs_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    pair = err.object[err.start:err.start + 2]
    try:
        return pair.decode("big5hkscs"), err.start + 2
    except UnicodeDecodeError:
        raise err from None


codecs.register_error("glmdata-big5hkscs", _hkscs_fallback)

# label -> decoders to try, strictest first
_CHAINS = {
    "gb2312": ("gb18030",), "gbk": ("gb18030",), "gb18030": ("gb18030",), "x-gbk": ("gb18030",),
    "euc-cn": ("gb18030",), "csgb2312": ("gb18030",), "chinese": ("gb18030",), "gb_2312-80": ("gb18030",),
    "big5": ("cp950", BIG5_WEB), "x-x-big5": ("cp950", BIG5_WEB), "cn-big5": ("cp950", BIG5_WEB),
    "cp950": ("cp950", BIG5_WEB), "big5-hkscs": (BIG5_WEB,),
    "euc-jp": ("euc_jp", "euc_jis_2004"), "x-euc-jp": ("euc_jp", "euc_jis_2004"),
    "shift_jis": ("cp932",), "sjis": ("cp932",), "x-sjis": ("cp932",), "windows-31j": ("cp932",),
    "euc-kr": ("cp949",), "ks_c_5601-1987": ("cp949",),
    "iso-8859-1": ("cp1252",), "latin1": ("cp1252",), "us-ascii": ("cp1252",), "ascii": ("cp1252",),
    "windows-1251": ("cp1251",), "cp1251": ("cp1251",), "koi8-r": ("koi8_r",),
    "utf8": ("utf-8",), "unicode-1-1-utf-8": ("utf-8",),
}

_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
PRESCAN_BYTES = 4096  # where browsers look for a <meta> declaration (HTML spec: first 1024; pages put it later)


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _HEADER_CHARSET.search(content_type)
    return m.group(1).lower() if m else None


def charset_from_markup(head: bytes) -> str | None:
    m = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    return m.group(1).decode("ascii", "replace").lower() if m else None


def decoders_for(label: str) -> tuple[str, ...]:
    label = label.strip().lower()
    if label in _CHAINS:
        return _CHAINS[label]
    try:
        return (codecs.lookup(label).name,)
    except LookupError:
        return ()


def _strict(data: bytes, chain: tuple[str, ...]) -> tuple[str, str] | None:
    for enc in chain:
        try:
            if enc == BIG5_WEB:
                return data.decode("cp950", "glmdata-big5hkscs"), enc
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return None


def decode(data: bytes, content_type: str | None = None, default: str | None = None) -> tuple[str, str]:
    """(text, decoder used). `default` is tried before detection when nothing is declared
    (WET conversion records are UTF-8 by definition). Never raises: the last resort replaces
    undecodable bytes with U+FFFD."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(enc, "replace"), enc
    labels = [charset_from_content_type(content_type), charset_from_markup(data[:PRESCAN_BYTES]), default or "utf-8"]
    chains = [decoders_for(label) for label in labels if label]
    for chain in chains:
        if chain and (found := _strict(data, chain)):
            return found
    detected = decoders_for(detect_encoding(data[:1 << 16]) or "utf-8") or ("utf-8",)
    if found := _strict(data, detected):
        return found
    fallback = next(enc for enc in (*(c[0] for c in chains if c), *detected) if enc != BIG5_WEB)
    return data.decode(fallback, "replace"), fallback
