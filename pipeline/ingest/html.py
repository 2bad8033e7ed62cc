"""HTML to main text with resiliparse, within a per-page budget.

Chosen over trafilatura by `bench/extractors.py` (figures in docs/benchmarks.md): on the same pages
it is 20-40 times faster for a few points less word F1 against reference article bodies, and its
main-content mode drops menus, footers and link lists. Comment sections and post metadata (bylines,
dates, share counts) are left out too: that raised F1 from 0.89 to 0.94 on the reference pages.
Block elements (paragraphs, headings, list items) come out one per line; blank lines and the
indentation resiliparse keeps for nesting are removed, so a paragraph is exactly one line.

Budget: resiliparse's extraction time grows with the square of the nesting depth (100k nested
<div> take 573 s), so a page is measured before it is parsed: its size, and the depth its tags
reach, by one linear scan. A page over either limit raises ExtractionOverBudget with the figures.
A scan rather than a timer, because a timer needs a signal (main thread only: Spark's Python worker
and Beam's DirectRunner run tasks elsewhere) or a process to kill, and a time limit would make the
output depend on the machine's speed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

# Start and end tags for the quick count; void elements never close, so they do not nest.
_QUICK_TAG = re.compile(r"<(/?)(?!(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)\b)[a-z]", re.I)
# Start and end tags (groups: '/' of an end tag, name, '/' of a self-closing tag), their attribute
# values skipped (they may hold '<' and '>'), and comments and other markup declarations (no name);
# ASCII only, as the HTML tokenizer reads them.
_TOKEN = re.compile(r"""<(?:!--(?:-?>|.*?--!?>|.*)|[!?][^>]*>?|/(?![a-zA-Z])[^>]*>?|(/?)([a-zA-Z][^\t\n\f\r />]*)"""
                    r"""(?:[\t\n\f\r ]+|/(?!>)|[^\t\n\f\r />][^\t\n\f\r />=]*"""
                    r"""(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"[^"]*"?|'[^']*'?|[^\t\n\f\r >]*))?)*(/?)>?)""", re.A | re.S)
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Elements whose content is text up to their end tag (plaintext's: to the end of the page).
_RAW_TEXT = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.A | re.I)
             for name in "script style textarea title xmp iframe noembed noframes plaintext".split()}
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_TABLE_PARENT = {"td": ("tr",), "th": ("tr",), "tr": ("tbody", "thead", "tfoot")}
_BLOCKS = ("address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer header "
           "hgroup main menu nav ol p search section summary ul pre listing").split()
# The open elements a start tag closes when one is the current node, as the parser closes them
# wherever they are: a block closes a <p>, an <li> an <li>, a cell a cell, a row the row and its cell.
# (Not <rt>/<rp>: they close one another only inside a <ruby>, which the scan cannot be sure of.)
_CLOSES = {**dict.fromkeys(_BLOCKS, ("p",)), **dict.fromkeys(_HEADINGS, ("p",) + _HEADINGS),
           "li": ("p", "li"), "dd": ("p", "dd", "dt"), "dt": ("p", "dd", "dt"), "option": ("option",),
           "optgroup": ("option",), "td": ("td", "th"), "th": ("td", "th"), "tr": ("td", "th", "tr")}
# An end tag closes the elements above its own only where the parser surely closes them too, by
# rank: 0 SVG and MathML elements, 1 those with optional end tags that are not "special" in the
# HTML parser, 2 <p>, <li>, <dd>, <dt>, 3 table parts, 4 the rest (formatting elements such as <b>
# among them: the parser reopens them after closing them with their parent).
_RANK = {**dict.fromkeys(("option", "optgroup", "rb", "rp", "rt", "rtc"), 1),
         **dict.fromkeys(("p", "li", "dd", "dt"), 2),
         **dict.fromkeys(("td", "th", "tr", "tbody", "thead", "tfoot", "caption", "colgroup"), 3)}
# The highest rank an end tag closes through: a table part's or a block's end tag generates the
# implied end tags and pops up to its element; others ("any other end tag") pass only non-special ones.
_CLOSES_THROUGH = {**dict.fromkeys(("table", "td", "th", "tr", "tbody", "thead", "tfoot", "caption", "colgroup"), 3),
                   **dict.fromkeys(_BLOCKS + [*_HEADINGS, "li", "dd", "dt", "button", "applet", "marquee", "object",
                                              "select"], 2),
                   "form": -1, "frameset": -1}  # the parser closes these alone: closed here only as the current node
# SVG and MathML: the HTML start tags that end them, and their elements whose content is HTML again.
_BREAKOUT = frozenset(("b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li "
                       "listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var").split())
# (and a <font> with one of these attributes)
_FONT_BREAKOUT = re.compile(r"[\t\n\f\r /](?:color|face|size)[\t\n\f\r /=>]", re.A | re.I)
_INTEGRATION = frozenset([" foreignobject", " desc", " title"] + ["  " + name for name in "mi mo mn ms mtext".split()])
_HTML_ANNOTATION = re.compile(r"""[\t\n\f\r /]encoding[\t\n\f\r ]*=[\t\n\f\r ]*["']?"""
                              r"""(?:text/html|application/xhtml\+xml)["'\t\n\f\r />]""", re.A | re.I)


class ExtractionOverBudget(ValueError):
    """A page over the extraction budget (the message has the figures)."""


@dataclass(frozen=True)
class ExtractionBudget:
    max_depth: int = 2000
    max_bytes: int = 16 << 20


def quick_depth(html: str) -> int:
    """The running count of start minus end tags, floored at 0 (a stray end tag closes nothing), in numpy
    (5-9x cheaper than `tag_depth` on the shared pages and tag-dense synthetic ones). It over-counts omitted end tags (2,000 unclosed <p> read 2,000 deep)
    and a '<' in text, and an end tag of another element, in a comment or a script lowers it where the
    parser closes nothing: a page it puts under the budget is let through, as before `tag_depth` was
    written; one it puts over gets `tag_depth`, so that legal shallow pages are not refused."""
    slashes = _QUICK_TAG.findall(html)
    if not slashes:
        return 0
    running = np.cumsum(1 - 2 * (np.array(slashes, dtype="<U1") == "/"))  # floored: less its lowest point so far
    return int((running - np.minimum(np.minimum.accumulate(running), 0)).max())


def tag_depth(html: str) -> int:
    """How deep the page's elements nest, by one linear scan with a stack of open element names: an
    upper bound on the parsed tree's depth (but for <html> and <body>), not the parser's tree.

    Text is skipped (comments, attribute values, script, style, textarea and the other raw-text
    elements); start tags close what the HTML parser surely closes (`_CLOSES`), void elements never
    open, and an end tag closes the topmost open element of its name only where the elements above
    it are ones the parser closes with it (`_CLOSES_THROUGH`); otherwise it closes nothing (a stray
    </b> among <div>s must not hide their nesting). SVG and MathML elements (names kept with a
    leading space, MathML's with two) follow their own rules: nothing in them is implicitly closed,
    and an HTML breakout tag closes them. While SVG, MathML or <select> is open, raw-text elements
    are not raw (the parser nests or ignores them there); inside a <frameset> every tag counts."""
    stack: list[str] = []
    # per open element, for each rank r from -1 to 3: the topmost position, up to its own, ranked above r
    above: list[tuple[int, ...]] = []
    where: dict[str, list[int]] = {}  # each name's open positions, bottom first
    deepest = foreign_open = 0

    def pop_to(k: int) -> None:
        nonlocal foreign_open
        while len(stack) > k:
            name = stack.pop()
            where[name].pop()
            above.pop()
            foreign_open -= name[0] == " "

    def push(name: str, rank: int) -> None:
        nonlocal foreign_open
        i = len(stack)
        above.append((i,) * (rank + 1) + (above[-1][rank + 1:] if above else (-1,) * (4 - rank)))
        stack.append(name)
        where.setdefault(name, []).append(i)
        foreign_open += name[0] == " "

    tokens = _TOKEN.finditer(html)
    while m := next(tokens, None):
        closing, name, self_closing = m.groups()
        if name is None:  # a comment or declaration
            continue
        name = name.lower() if name.isascii() else name
        top = stack[-1] if stack else ""
        if where.get("frameset"):  # the parser ignores all but framesets there: count all, close only the current node
            if closing and name == top:
                pop_to(len(stack) - 1)
            elif not closing and name not in _VOID:
                push(name, 4)
            deepest = max(deepest, len(stack))
            continue
        foreign = top[:1] == " " and above[-1][1] < len(stack) - 1  # in SVG/MathML, not at an integration point
        if closing:
            spot = max((where.get(" " + name) or [-1])[-1], (where.get("  " + name) or [-1])[-1]) if foreign else -1
            if spot < 0 or above[-1][1] > spot:  # in SVG/MathML: its element, through SVG/MathML ones
                spot = (where.get(name) or [-1])[-1]
                if spot < 0 or above[-1][_CLOSES_THROUGH.get(name, 1) + 1] > spot:
                    continue
            pop_to(spot)
            continue
        if foreign and name not in _BREAKOUT and not (name == "font" and _FONT_BREAKOUT.search(m.group(0))):
            space = " " if top[:2] != "  " or name == "svg" and top == "  annotation-xml" else "  "
            html_next = space + name in _INTEGRATION or (space + name == "  annotation-xml"
                                                         and _HTML_ANNOTATION.search(m.group(0)))
            push(space + name, 4 if html_next else 0)
        else:
            while foreign and stack and above[-1][1] < len(stack) - 1:  # a breakout tag ends SVG/MathML
                pop_to(len(stack) - 1)
            if name in _VOID or name in ("html", "head", "body"):  # the page's own (depth 1 and 2), or ignored
                continue
            if _RANK.get(name) == 3 and not where.get("table"):  # table parts outside a table are ignored
                continue
            if name in _RAW_TEXT and not foreign_open and not where.get("select"):
                deepest = max(deepest, len(stack) + 1)
                end = _RAW_TEXT[name].search(html, m.end()) if name != "plaintext" else None
                if end is None:
                    break
                tokens = _TOKEN.finditer(html, end.start())
                continue
            closes = _CLOSES.get(name, ())
            while stack and stack[-1] in closes:
                pop_to(len(stack) - 1)
            if name in _TABLE_PARENT and stack[-1] not in _TABLE_PARENT[name]:
                # not in its parent: the parser inserts the <tbody> and <tr> the innermost table lacks
                table = where["table"][-1]
                if max((where.get(part) or [-1])[-1] for part in ("tbody", "thead", "tfoot")) < table:
                    push("tbody", 3)
                if name != "tr" and (where.get("tr") or [-1])[-1] < table:
                    push("tr", 3)
            if name not in ("svg", "math"):
                push(name, _RANK.get(name, 4))
            elif not self_closing:  # <svg/> closes at once (inside SVG, <x/> is left open: the scan may be wrong there)
                push((" " if name == "svg" else "  ") + name, 0)
        deepest = max(deepest, len(stack))
    return deepest


def check_budget(html: str, budget: ExtractionBudget) -> None:
    if len(html) > budget.max_bytes:
        raise ExtractionOverBudget(f"page of {len(html)} characters is over ingest.max_html_bytes ({budget.max_bytes})")
    if html.count("<") - html.count("</") <= budget.max_depth:  # cannot nest deeper than it has start tags
        return
    if quick_depth(html) <= budget.max_depth:
        return
    depth = tag_depth(html)
    if depth > budget.max_depth:
        raise ExtractionOverBudget(f"tags nest {depth} deep, over ingest.max_html_depth ({budget.max_depth})")


@dataclass(frozen=True)
class Page:
    """What ingest keeps of an HTML page."""

    text: str
    title: str | None  # the <title> element's text (the parsed tree has it for free); None without one


def html_page(html: str, budget: ExtractionBudget = ExtractionBudget(), *, main_content: bool = True,
              list_fallback: bool = False) -> Page:
    """Main text (`main_content`; else every text block), one block per line, and the title.
    `list_fallback` adds back what main-content mode dropped inside the article (see
    `with_inner_lines`)."""
    check_budget(html, budget)
    tree = HTMLTree.parse(html)
    lines = _extract_lines(tree, main_content)
    if main_content and list_fallback:
        lines = with_inner_lines(lines, _extract_lines(tree, False, list_bullets=True))
    title = (tree.title or "").replace("\ufeff", "").strip()
    return Page("\n".join(lines), title or None)


def html_to_text(html: str, budget: ExtractionBudget = ExtractionBudget(), *, main_content: bool = True,
                 list_fallback: bool = False) -> str:
    """`html_page`'s text."""
    return html_page(html, budget, main_content=main_content, list_fallback=list_fallback).text


def _extract_lines(tree: HTMLTree, main_content: bool, list_bullets: bool = False) -> list[str]:
    text = extract_plain_text(tree, preserve_formatting=True, main_content=main_content, list_bullets=list_bullets,
                              alt_texts=False, links=False, form_fields=False, noscript=False,
                              comments=False, post_meta=False)
    text = text.replace("\ufeff", "")  # byte-order marks inside pages (after a meta-declared charset)
    return [line.strip() for line in text.splitlines() if line.strip()]


# Chosen on bench/extractors.py's pages (news references and the labelled crawl pages): the
# article starts at main's first line of START_ANCHOR_BYTES (UTF-8: a sentence; at 40, headlines
# and bylines above the menu let it in: news F1 0.941 -> 0.934) and ends at its last line of
# END_ANCHOR_BYTES (a section heading such as Wikipedia's "References[edit]" counts: at 80 the
# article's closing lists stay out); list items shorter than ITEM_BYTES are menus and share buttons
# more often than content (items of any length: news F1 0.934).
START_ANCHOR_BYTES = 80
END_ANCHOR_BYTES = 40
ITEM_BYTES = 20
_LIST_ITEM = re.compile(r"(?:\u2022|\d+\.) ")  # resiliparse's list_bullets markers: unordered, ordered


def with_inner_lines(main: list[str], full: list[str]) -> list[str]:
    """`main` with the list items and table rows of `full` (extracted with list bullets) that lie
    between main's first and last substantial lines restored, in page order; every line of
    `main` stays.

    resiliparse's main-content mode drops short list items and table rows even inside the article
    (a Wikipedia article's list of monuments, a numbered publication list, a blog post of links); in
    the full text they sit between the article's first and last paragraphs, while menus and
    footers sit outside. Other full-text lines there (captions, bylines) and items shorter than
    ITEM_BYTES stay out. Unchanged when no substantial line of `main` is found in `full`."""
    size = [len(line.encode()) for line in main]
    first = next((i for i, n in enumerate(size) if n >= START_ANCHOR_BYTES), None)
    if first is None:
        return main
    last = max(i for i, n in enumerate(size) if n >= END_ANCHOR_BYTES)
    items = [_LIST_ITEM.match(line) for line in full]
    inner = [line[m.end():] if m else line for line, m in zip(full, items)]
    start = next((i for i, line in enumerate(inner) if main[first] in (line, full[i])), None)
    end = next((i for i in range(len(inner) - 1, -1, -1) if main[last] in (inner[i], full[i])), None)
    if start is None or end is None or end < start:
        return main
    article = main[first:last + 1]
    kept, merged, j = set(article), [], 0
    for line, raw, item in zip(inner[start:end + 1], full[start:end + 1], items[start:end + 1]):
        if j < len(article) and article[j] in (line, raw):
            merged.append(article[j])
            j += 1
        elif line not in kept and (item or "\t" in line) and len(line.encode()) >= ITEM_BYTES:
            merged.append(line)
    return main[:first] + merged + article[j:] + main[last + 1:]
