"""Writes the synthetic demo crawl that `make demo` ingests: `python -m pipeline.demo_corpus --out DIR`.

Everything comes from text this project contains (pipeline/demo_text/: original English and
Chinese prose and sentence templates written for glmdata) and a fixed seed, so the output is the
same bytes on every machine, offline, in a second or two. It is synthetic and says so in its URLs
(`*.demo.invalid`) and warcinfo record.

    DIR/warc/demo-0000N.warc.gz    WARC, one gzip member per record (as CommonCrawl ships it):
                                   request + response pairs, English pages, Chinese pages in UTF-8,
                                   GBK (declared in the header, in a <meta>, or not at all) and Big5
                                   (Traditional copies of Simplified pages); menus, cookie banners and
                                   footers around every article; keyword-stuffed lottery/SEO spam;
                                   exact and near duplicates; a redirect, an image, a revisit; the
                                   last file ends in a truncated gzip member
    DIR/wet/demo-00000.warc.wet.gz WET conversion records (plain text) of other pages
    DIR/jsonl/demo.dolma.jsonl.gz  JSON lines in the dolma layout, with a malformed and a non-UTF-8 line
    DIR/jsonl/demo.ccnet.jsonl     JSON lines in the CCNet layout (Chinese), with an empty document
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

SEED = 20240522
CRAWL_DATE = "2024-05-22T08:00:00Z"
TOWN_PAGES_PER_LANG = 110
WARC_FILES = 3
TEXT_DIR = Path(__file__).resolve().parent / "demo_text"


@dataclass
class Page:
    url: str
    title: str
    paragraphs: list[str]
    lang: str  # "en" or "zh"
    encoding: str = "utf-8"  # how the HTML is encoded
    declare: str = "header"  # where the charset is declared: header, meta, none
    boilerplate: bool = True


# ---------------------------------------------------------------------------------------------
# Text


def _text(name: str) -> str:
    return (TEXT_DIR / name).read_text(encoding="utf-8")


def articles(lang: str) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of the hand-written articles in demo_text/<lang>.txt."""
    out: list[tuple[str, list[str]]] = []
    for block in _text(f"{lang}.txt").split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        out.append((title.strip(), [p.strip() for p in body.split("\n\n") if p.strip()]))
    return out


def templates() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in _text("towns.txt").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line.strip()):
            current = sections.setdefault(m.group(1), [])
        else:
            current.append(line.strip())
    return sections


EN_SLOTS = {
    "side": ["north", "south", "east", "west"],
    "river": ["Alder", "Wenn", "Calder", "Brook Leigh", "Tamsey", "Orrin", "Pellow", "Marrow"],
    "craft": ["pottery", "rope making", "glass blowing", "weaving", "clock making", "boat building", "tanning"],
    "season": ["spring", "early summer", "late summer", "autumn", "winter"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    "dish": ["rye bread", "plum cake", "apple pies", "oat biscuits", "smoked trout", "pear tarts"],
}
ZH_SLOTS = {
    "zside": ["北岸", "南岸", "东岸", "西岸"],
    "zriver": ["清溪", "白沙河", "桃花江", "青龙河", "柳溪", "石门河", "月亮河"],
    "zcraft": ["竹编", "制陶", "织布", "造纸", "酿酒", "打铁", "刺绣"],
    "zseason": ["春天", "初夏", "盛夏", "秋天", "冬天"],
    "zweekday": ["周一", "周二", "周三", "周四", "周五", "周六"],
    "zdish": ["葱油饼", "豆浆油条", "桂花糕", "米粉", "馄饨", "糯米糍"],
}
EN_SYLLABLES = ["ash", "brook", "ford", "ley", "mere", "wick", "holt", "ton", "by", "stead", "combe", "dale"]
ZH_SYLLABLES = ["青", "石", "桥", "溪", "云", "松", "竹", "梅", "安", "宁", "平", "河", "山", "湾", "林"]


def town_name(rng: random.Random, lang: str) -> str:
    if lang == "en":
        return (rng.choice(EN_SYLLABLES) + rng.choice(EN_SYLLABLES)).capitalize()
    return rng.choice(ZH_SYLLABLES) + rng.choice(ZH_SYLLABLES) + "镇"


def town_page(rng: random.Random, lang: str, pool: list[str], index: int) -> tuple[str, list[str]]:
    """A page about a fictional town: 8-14 templates drawn without repetition, slots filled."""
    town, town2 = town_name(rng, lang), town_name(rng, lang)
    slots = {k: rng.choice(v) for k, v in (EN_SLOTS if lang == "en" else ZH_SLOTS).items()}
    slots.update(town=town, town2=town2, ztown=town, ztown2=town2, n=rng.randint(3, 60),
                 n2=rng.randint(2, 9), n3=rng.randint(20, 400), n4=rng.randint(2, 12),
                 year=rng.randint(1920, 1990), year2=rng.randint(1550, 1800))
    sentences = [t.format(**slots) for t in rng.sample(pool, rng.randint(8, 14))]
    cut = max(2, len(sentences) // 3)
    joiner = " " if lang == "en" else ""
    paragraphs = [joiner.join(sentences[i:i + cut]) for i in range(0, len(sentences), cut)]
    title = f"Notes on {town}" if lang == "en" else f"{town}见闻"
    return f"{title} ({index})" if lang == "en" else f"{title}（{index}）", paragraphs


SPAM_EN = ["lucky numbers", "win big today", "best cheap deals", "free lottery tips", "top ranked offers",
           "click here now", "jackpot prediction", "guaranteed winning system", "limited time bonus"]
SPAM_ZH = ["彩票预测", "免费领取", "中奖号码", "今日特价", "点击进入", "稳赚不赔", "最新优惠", "官方推荐", "限时抢购"]


def spam_page(rng: random.Random, lang: str) -> list[str]:
    words = SPAM_EN if lang == "en" else SPAM_ZH
    sep = " " if lang == "en" else "，"
    return [sep.join(rng.choice(words) for _ in range(rng.randint(30, 60))) for _ in range(rng.randint(2, 4))]


# ---------------------------------------------------------------------------------------------
# HTML and WARC


BOILERPLATE_EN = ("Home | News | Travel | Food | Contact | Login",
                  "We use cookies to improve your experience. Accept all cookies or manage settings.",
                  "Copyright 2024 Demo Network. All rights reserved. Privacy | Terms | Sitemap | Advertise")
BOILERPLATE_ZH = ("首页 | 新闻 | 旅游 | 美食 | 联系我们 | 登录",
                  "本站使用 Cookie 改善您的浏览体验。点击接受即表示同意。",
                  "版权所有 2024 演示网络 保留所有权利 隐私政策 | 服务条款 | 网站地图")


def render_html(page: Page) -> bytes:
    menu, cookies, footer = BOILERPLATE_EN if page.lang == "en" else BOILERPLATE_ZH
    meta = f'<meta charset="{page.encoding}">' if page.declare == "meta" else ""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in page.paragraphs)
    chrome_top = (f'<nav class="menu"><ul>{"".join(f"<li><a href=/{i}>{html.escape(w.strip())}</a></li>" for i, w in enumerate(menu.split("|")))}</ul></nav>'
                  f'<div class="cookie-banner">{html.escape(cookies)}</div>') if page.boilerplate else ""
    heading = f"<h1>{html.escape(page.title)}</h1>" if page.title else ""
    chrome_bottom = f'<footer class="footer">{html.escape(footer)}</footer>' if page.boilerplate else ""
    doc = (f'<!DOCTYPE html>\n<html lang="{page.lang}"><head>{meta}<title>{html.escape(page.title)}</title></head>\n'
           f"<body>{chrome_top}<main><article>{heading}\n{body}\n</article></main>"
           f"{chrome_bottom}</body></html>\n")
    return doc.encode(page.encoding, "xmlcharrefreplace")  # as a browser would submit what the charset lacks


def record_id(*parts: str) -> str:
    h = hashlib.sha1("\0".join(parts).encode()).hexdigest()
    return f"<urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}>"


def warc_record(rec_type: str, url: str | None, block: bytes, content_type: str, extra: dict | None = None) -> bytes:
    headers = {"WARC-Type": rec_type, "WARC-Date": CRAWL_DATE, "WARC-Record-ID": record_id(rec_type, url or "", str(len(block)))}
    if url:
        headers["WARC-Target-URI"] = url
    headers.update(extra or {})
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(block))
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + block + b"\r\n\r\n"


def http_response(body: bytes, content_type: str, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def page_records(page: Page) -> list[bytes]:
    request = f"GET /{page.url.split('/', 3)[-1]} HTTP/1.1\r\nHost: {page.url.split('/')[2]}\r\nUser-Agent: glmdata-demo\r\n\r\n".encode()
    content_type = "text/html" + (f"; charset={page.encoding}" if page.declare == "header" else "")
    return [warc_record("request", page.url, request, "application/http; msgtype=request"),
            warc_record("response", page.url, http_response(render_html(page), content_type),
                        "application/http; msgtype=response")]


def warcinfo(name: str) -> bytes:
    fields = f"software: glmdata demo_corpus\r\nformat: WARC File Format 1.0\r\ndescription: SYNTHETIC demo crawl, generated from text in pipeline/demo_text\r\nfilename: {name}\r\n"
    return warc_record("warcinfo", None, fields.encode(), "application/warc-fields", {"WARC-Filename": name})


def gzip_member(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


# ---------------------------------------------------------------------------------------------
# The corpus


def build_pages(rng: random.Random) -> tuple[list[Page], list[Page]]:
    """(pages for the WARC files, pages for the WET file)."""
    from opencc import OpenCC

    to_traditional = OpenCC("s2t")
    pool = templates()
    en, zh = articles("en"), articles("zh")
    pages: list[Page] = []
    for i, (title, paras) in enumerate(en):
        pages.append(Page(f"http://en-{i % 4}.demo.invalid/articles/{i}", title, paras, "en"))
    zh_ways = [("utf-8", "header"), ("gbk", "header"), ("gbk", "meta"), ("gb2312", "none"), ("utf-8", "meta")]
    for i, (title, paras) in enumerate(zh):
        enc, declare = zh_ways[i % len(zh_ways)]
        if enc == "gb2312":  # undeclared pages are detected; GBK bytes, labelled nowhere
            enc = "gbk"
        pages.append(Page(f"http://zh-{i % 3}.demo.invalid/wenzhang/{i}.html", title, paras, "zh", enc, declare))
    for i, (title, paras) in enumerate(zh[:6]):  # Traditional copies on a Big5 site
        pages.append(Page(f"http://hant.demo.invalid/wenzhang/{i}.html", to_traditional.convert(title),
                          [to_traditional.convert(p) for p in paras], "zh", "big5", ("header", "meta")[i % 2]))
    for lang in ("en", "zh"):
        for i in range(TOWN_PAGES_PER_LANG):
            title, paras = town_page(rng, lang, pool[lang], i)
            pages.append(Page(f"http://towns-{lang}.demo.invalid/{i}", title, paras, lang))
    for i in range(8):
        lang = ("en", "zh")[i % 2]
        pages.append(Page(f"http://lucky-{i}.demo.invalid/", "WIN NOW" if lang == "en" else "好消息", spam_page(rng, lang), lang))
    originals = list(pages)
    for i, p in enumerate(rng.sample(originals, 8)):  # exact duplicates: same article, another site
        pages.append(Page(f"http://mirror.demo.invalid/copy/{i}", p.title, p.paragraphs, p.lang, p.encoding, p.declare))
    for i, p in enumerate(rng.sample(originals, 8)):  # near duplicates: a sentence changed, a line added
        paras = list(p.paragraphs)
        paras[-1] = paras[-1] + (" This page was updated last week." if p.lang == "en" else "本文已于上周更新。")
        pages.append(Page(f"http://reposts.demo.invalid/{i}", p.title, paras, p.lang, "utf-8", "header"))
    pages.append(Page("http://en-0.demo.invalid/menu-only", "", [], "en"))  # no main text at all
    rng.shuffle(pages)
    wet_pages = pages[-40:]
    return pages[:-40], wet_pages


def write_warcs(out: Path, pages: list[Page]) -> list[Path]:
    paths = []
    per_file = -(-len(pages) // WARC_FILES)
    for f in range(WARC_FILES):
        name = f"demo-{f:05d}.warc.gz"
        records = [warcinfo(name)]
        for page in pages[f * per_file:(f + 1) * per_file]:
            records += page_records(page)
        # Non-documents a real crawl is full of: a redirect, an image, a revisit.
        records.append(warc_record("response", f"http://en-{f}.demo.invalid/old",
                                   http_response(b"", "text/html", "301 Moved Permanently", "Location: /new\r\n"),
                                   "application/http; msgtype=response"))
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
        records.append(warc_record("response", f"http://en-{f}.demo.invalid/logo.png", http_response(png, "image/png"),
                                   "application/http; msgtype=response"))
        records.append(warc_record("revisit", f"http://en-{f}.demo.invalid/articles/{f}", b"",
                                   "application/http; msgtype=response",
                                   {"WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"}))
        data = b"".join(gzip_member(r) for r in records)
        if f == WARC_FILES - 1:  # a crawl cut off mid-write: half a record in a truncated member
            member = gzip_member(page_records(pages[0])[1])
            data += member[: len(member) // 2]
        path = out / "warc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_wet(out: Path, pages: list[Page]) -> Path:
    name = "demo-00000.warc.wet.gz"
    records = [warcinfo(name)]
    for page in pages:
        text = "\n".join([page.title, *page.paragraphs]).encode("utf-8")
        records.append(warc_record("conversion", page.url, text, "text/plain",
                                   {"WARC-Refers-To": record_id("response", page.url)}))
    path = out / "wet" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(gzip_member(r) for r in records))
    return path


def contaminated_pages(rng: random.Random, lang: str, pool: list[str]) -> list[str]:
    """Town pages that quote items of the demo benchmark (demo_text/benchmark_items.jsonl), for the
    decontaminate stage to find: three verbatim, two edited as pages edit (ASCII punctuation and
    case; Traditional script), one item short of a full n-gram."""
    items = [json.loads(line)["question"] for line in _text("benchmark_items.jsonl").splitlines()
             if json.loads(line)["lang"] == lang]
    if lang == "en":
        quoted = [items[0], items[1], items[4], items[6].upper(), items[3].replace(",", " ,"), items[7]]
    else:
        from opencc import OpenCC

        quoted = [items[0], items[1], items[4], items[3].replace("，", ", ").replace("？", "?"),
                  OpenCC("s2t").convert(items[5]), items[7]]
    pages = []
    for i, item in enumerate(quoted):
        title, paras = town_page(rng, lang, pool, 2000 + i)
        pages.append("\n".join([title, *paras[:2], item, *paras[2:]]))
    return pages


def write_jsonl(out: Path, rng: random.Random) -> list[Path]:
    pool = templates()
    lines = []
    for i, (title, paras) in enumerate(articles("en")[:8]):
        lines.append(json.dumps({"id": f"demo-dolma-{i}", "text": "\n".join([title, *paras]), "created": CRAWL_DATE,
                                 "metadata": {"url": f"http://books.demo.invalid/{i}"}}, ensure_ascii=False).encode())
    for i in range(30):
        title, paras = town_page(rng, "en", pool["en"], 1000 + i)
        lines.append(json.dumps({"id": f"demo-dolma-town-{i}", "text": "\n".join([title, *paras]),
                                 "created": CRAWL_DATE, "metadata": {"url": f"http://towns-en.demo.invalid/j{i}"}}).encode())
    lines.insert(5, b'{"id": "demo-dolma-broken", "text": "a line cut in the middle')  # malformed JSON
    lines.insert(12, b'{"id": "demo-dolma-latin1", "text": "caf\xe9 cr\xe8me"}')  # not UTF-8
    for i, text in enumerate(contaminated_pages(rng, "en", pool["en"])):
        lines.append(json.dumps({"id": f"demo-dolma-quiz-{i}", "text": text, "created": CRAWL_DATE,
                                 "metadata": {"url": f"http://quiz-en.demo.invalid/{i}"}}).encode())
    dolma = out / "jsonl" / "demo.dolma.jsonl.gz"
    dolma.parent.mkdir(parents=True, exist_ok=True)
    dolma.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))

    rows = []
    for i, (title, paras) in enumerate(articles("zh")[8:]):
        text = "\n".join([title, *paras])
        rows.append({"url": f"http://wudao-like.demo.invalid/{i}", "date_download": CRAWL_DATE,
                     "digest": "sha1:" + hashlib.sha1(text.encode()).hexdigest(), "raw_content": text,
                     "language": "zh"})
    for i in range(30):
        title, paras = town_page(rng, "zh", pool["zh"], 1000 + i)
        text = "\n".join([title, *paras])
        rows.append({"url": f"http://towns-zh.demo.invalid/j{i}", "date_download": CRAWL_DATE,
                     "digest": "sha1:" + hashlib.sha1(text.encode()).hexdigest(), "raw_content": text, "language": "zh"})
    for i, text in enumerate(contaminated_pages(rng, "zh", pool["zh"])):
        rows.append({"url": f"http://quiz-zh.demo.invalid/{i}", "date_download": CRAWL_DATE,
                     "digest": "sha1:" + hashlib.sha1(text.encode()).hexdigest(), "raw_content": text, "language": "zh"})
    rows.append({"url": "http://wudao-like.demo.invalid/empty", "date_download": CRAWL_DATE,
                 "digest": "sha1:empty", "raw_content": "   ", "language": "zh"})
    ccnet = out / "jsonl" / "demo.ccnet.jsonl"
    ccnet.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return [dolma, ccnet]


def generate(out: Path) -> list[Path]:
    rng = random.Random(SEED)
    warc_pages, wet_pages = build_pages(rng)
    return [*write_warcs(out, warc_pages), write_wet(out, wet_pages), *write_jsonl(out, rng)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.demo_corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write warc/, wet/ and jsonl/ into")
    args = parser.parse_args(argv)
    out = Path(args.out)
    paths = generate(out)
    total = sum(p.stat().st_size for p in paths)
    print(f"synthetic demo crawl: {len(paths)} files, {total / 1024:.0f} KiB compressed, in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
