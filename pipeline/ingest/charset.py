"""Bytes of a web page to Unicode.

Precedence: a byte-order mark; the HTTP header's charset; then either `default`, the encoding the container
guarantees (WET conversion records are UTF-8 by definition, and a <meta> they quote is text), or the page's own
declaration (<meta charset>, <meta http-equiv>, <?xml encoding?>); then UTF-8. The first of these whose decoder
accepts every byte wins. Two exceptions: a single-byte header label (ISO-8859-1, windows-125x, KOI8...) never fails,
so a page whose markup declares a multi-byte CJK charset is decoded with that one first when it fits (servlet
containers send ISO-8859-1 by default); and when no declared decoder fits, a page with a damaged byte or a character
cut at its end keeps the declared decoder that leaves few errors (MAX_ERROR_SHARE), replacing them. Only then does
detection (uchardet, through resiliparse) decide, and the last resort replaces bad bytes with U+FFFD.

Labels resolve through the WHATWG Encoding Standard's table to the decoders browsers really use: GB2312 and GBK
pages are decoded as GB18030, their superset, because servers label GBK and GB18030 text "gb2312", with GBK's euro
sign at 0x80; Big5 is decoded as cp950 (the Microsoft table Taiwanese text is written in), with Big5-HKSCS for the
Hong Kong characters cp950 lacks; ISO-8859-1 and ASCII as windows-1252. A label the table lacks (utf-7, or a Python
bytes-to-bytes codec such as base64) is no declaration, and UTF-16 in markup means UTF-8, as in the HTML spec.
"""
from __future__ import annotations

import codecs
import re
from operator import itemgetter

from resiliparse.parse.encoding import detect_encoding

# cp950 for every character it has, Big5-HKSCS for the Hong Kong ones it lacks: the two tables
# disagree on a few common symbols (A145 is U+2027 in cp950, U+2022 in big5hkscs), and text
# written on Windows means the cp950 ones.
BIG5_WEB = "cp950+big5hkscs"


def _hkscs(err: UnicodeDecodeError) -> tuple[str, int] | None:
    try:
        return err.object[err.start:err.start + 2].decode("big5hkscs"), err.start + 2
    except UnicodeDecodeError:
        return None


def _gbk_euro(err: UnicodeDecodeError) -> tuple[str, int] | None:
    # a lone 0x80 is the euro sign in CP936 and in WHATWG's gbk decoder; GB18030 leaves it undefined
    return ("\u20ac", err.start + 1) if err.object[err.start] == 0x80 else None


def _register(name: str, fix) -> None:
    """Error handlers `name`-strict and `name`-replace: what `fix` decodes, else raise or U+FFFD."""
    def strict(err: UnicodeDecodeError) -> tuple[str, int]:
        if found := fix(err):
            return found
        raise err

    codecs.register_error(name + "-strict", strict)
    codecs.register_error(name + "-replace", lambda err: fix(err) or ("\ufffd", err.end))


_register("glmdata-big5hkscs", _hkscs)
_register("glmdata-gbk-euro", _gbk_euro)
# decoder -> (Python codec, error handler supplying what the codec lacks)
_PATCHED = {BIG5_WEB: ("cp950", "glmdata-big5hkscs"), "gb18030": ("gb18030", "glmdata-gbk-euro")}

# The WHATWG labels (encoding.spec.whatwg.org/#names-and-labels), each row an encoding: decoders to try, strictest
# first, then its labels. The "replacement" labels (ISO-2022-KR, ISO-2022-CN, HZ-GB-2312) name nothing here.
# Additions: euc-cn and cp950, which Chinese servers send; x-user-defined as the HTML prescan reads it.
_WHATWG = (
    ("utf-8", "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8"),
    ("cp866", "866 cp866 csibm866 ibm866"),
    ("iso8859-2", "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2"),
    ("iso8859-3", "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3"),
    ("iso8859-4", "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4"),
    ("iso8859-5", "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988"),
    ("iso8859-6", "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e "
                  "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987"),
    ("iso8859-7", "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597 "
                  "iso_8859-7 iso_8859-7:1987 sun_eu_greek"),
    ("iso8859-8", "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598 "
                  "iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical"),
    ("iso8859-10", "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6"),
    ("iso8859-13", "iso-8859-13 iso8859-13 iso885913"),
    ("iso8859-14", "iso-8859-14 iso8859-14 iso885914"),
    ("iso8859-15", "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9"),
    ("iso8859-16", "iso-8859-16"),
    ("koi8_r", "cskoi8r koi koi8 koi8-r koi8_r"),
    ("koi8_u", "koi8-ru koi8-u"),
    ("mac_roman", "csmacintosh mac macintosh x-mac-roman"),
    ("cp874", "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874"),
    ("cp1250", "cp1250 windows-1250 x-cp1250"),
    ("cp1251", "cp1251 windows-1251 x-cp1251"),
    ("cp1252", "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 iso88591 "
               "iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252 x-user-defined"),
    ("cp1253", "cp1253 windows-1253 x-cp1253"),
    ("cp1254", "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 latin5 "
               "windows-1254 x-cp1254"),
    ("cp1255", "cp1255 windows-1255 x-cp1255"),
    ("cp1256", "cp1256 windows-1256 x-cp1256"),
    ("cp1257", "cp1257 windows-1257 x-cp1257"),
    ("cp1258", "cp1258 windows-1258 x-cp1258"),
    ("mac_cyrillic", "x-mac-cyrillic x-mac-ukrainian"),
    ("gb18030", "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030 euc-cn"),
    (f"cp950 {BIG5_WEB}", "big5 cn-big5 csbig5 x-x-big5 cp950"),
    (BIG5_WEB, "big5-hkscs"),
    ("euc_jp euc_jis_2004", "cseucpkdfmtjapanese euc-jp x-euc-jp"),
    ("iso2022_jp iso2022_jp_ext", "csiso2022jp iso-2022-jp"),
    ("cp932", "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis"),
    ("cp949", "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 "
              "windows-949"),
    ("utf-16-be", "unicodefffe utf-16be"),
    ("utf-16-le", "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le"),
)
_CHAINS = {label: tuple(decoders.split()) for decoders, labels in _WHATWG for label in labels.split()}
_CJK = {"gb18030", "cp950", BIG5_WEB, "euc_jp", "iso2022_jp", "cp932", "cp949"}  # first decoders of a chain
_MULTI_BYTE = _CJK | {"utf-8", "utf-16-le", "utf-16-be"}

# Most U+FFFD per non-ASCII character for a declared decoder to win over detection when nothing decodes strictly.
# Per non-ASCII character, not per character: a GBK page of ASCII markup around a little Chinese would pass as UTF-8
# (2-14% of all characters on the shared crawl's GB pages). Measured on shared/data with one damaged character:
# Chinese UTF-8 pages score at most 0.04, and 127 of 158 English news pages pass 0.25 (96 pass 0.1; the rest have
# under 4 non-ASCII characters). GBK and Big5 pages, feeds and SIGHAN text read as UTF-8 score 0.73 or more; a 3- to
# 5-character GBK or Big5 title in ASCII markup passes 0.25 as rarely as 0.1 (0.3%), 0.34 up to 1.8%, 0.5 up to 16%.
MAX_ERROR_SHARE = 0.25

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


def decoders_for(label: str, in_markup: bool = False) -> tuple[str, ...]:
    """Decoders for a label, () for one the WHATWG table lacks. In markup UTF-16 means UTF-8 (HTML spec:
    the prescan read the label as ASCII, so the page is not UTF-16)."""
    chain = _CHAINS.get(label.strip().lower(), ())
    return ("utf-8",) if in_markup and chain and chain[0].startswith("utf-16") else chain


def _decode(data: bytes, enc: str, errors: str) -> str:
    if enc in _PATCHED:
        codec, handler = _PATCHED[enc]
        return data.decode(codec, f"{handler}-{errors}")
    return data.decode(enc, errors)


def _strict(data: bytes, chain: tuple[str, ...]) -> tuple[str, str] | None:
    for enc in chain:
        try:
            return _decode(data, enc, "strict"), enc
        except (UnicodeDecodeError, LookupError):
            continue
    return None


def _fewest_errors(data: bytes, chains: list[tuple[str, ...]]) -> tuple[float, str, str]:
    """(share of U+FFFD among non-ASCII characters, text, decoder) of the chain whose most lenient decoder
    replaces least; the first on a tie."""
    scored = []
    for enc in (chain[-1] for chain in chains):
        text = _decode(data, enc, "replace")
        scored.append((text.count("\ufffd") / max(1, len(text) - len(text.encode("ascii", "ignore"))), text, enc))
    return min(scored, key=itemgetter(0))


def decode(data: bytes, content_type: str | None = None, default: str | None = None) -> tuple[str, str]:
    """(text, decoder used), in the precedence of the module docstring. `default` is the encoding the
    container guarantees. Never raises: the last resort replaces undecodable bytes with U+FFFD."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(enc, "replace"), enc
    header = decoders_for(charset_from_content_type(content_type) or "")
    if default:
        declared = (header, decoders_for(default))
    else:
        markup = decoders_for(charset_from_markup(data[:PRESCAN_BYTES]) or "", in_markup=True)
        declared = (header, markup)
        if header and header[0] not in _MULTI_BYTE and markup and markup[0] in _CJK:
            # a single-byte decoder never fails: tried first it would turn every such CJK page into mojibake
            if found := _strict(data, markup):
                return found
    chains = [chain for chain in dict.fromkeys((*declared, ("utf-8",))) if chain]
    for chain in chains:
        if found := _strict(data, chain):
            return found
    # Nothing fits strictly: detection's single-byte guess would never fail either, and would turn a page with
    # one damaged byte into mojibake where the declared decoder loses one character.
    if (few := _fewest_errors(data, chains))[0] <= MAX_ERROR_SHARE:
        return few[1:]
    detected = decoders_for(detect_encoding(data[:1 << 16], html5_compatible=False) or "") or ("utf-8",)
    return _strict(data, detected) or _fewest_errors(data, [*chains, detected])[1:]
