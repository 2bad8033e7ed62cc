"""`glmdata report` and `glmdata inspect` on crawled text that attacks its display: control characters
and ANSI escapes that would act on the reader's terminal, bidi overrides that would reverse the rest of
a line, rich markup and HTML in names and reasons. Each is shown as written, and acts on nothing."""
from __future__ import annotations

import io
import logging
from html.parser import HTMLParser

import pyarrow as pa
from rich.console import Console

from pipeline.cli import main as glmdata
from pipeline.report import collect, write_report
from pipeline.report_html import render_page
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import UnitWriter
from report_fixtures import make_run, write_stage

CLEAR_SCREEN = "\x1b[2J\x1b[H"
C1_CSI = "\x9b2J"  # the one-byte form of ESC [
RLO = "\u202e"  # right-to-left override: reverses everything after it on the line
MARKUP = "x[/]y [red]z"  # a closing tag with nothing to close raises MarkupError in rich
# Names and texts that try to leave the element or attribute they are written in.
HTML_ATTACKS = ["</script><script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
                "a\"b'c<d>", "<!--", "x onclick=alert(1)"]


def rejected_stage(tmp_path, reason: str, text: str, **row) -> str:
    out = str(tmp_path / "quality")
    writer = UnitWriter(out, "quality", 0)
    doc = {"id": "d1", "text": text, "url": "http://example.com/1", "source": "web", "lang": "en", **row}
    writer.reject(pa.Table.from_pylist([doc], DOC_SCHEMA), reason, len(text.encode()), details=[f"detail {RLO}x"])
    writer.close()
    return out


def test_inspect_shows_control_characters_instead_of_sending_them(tmp_path, capsys):
    stage = rejected_stage(tmp_path, "spam", f"before{CLEAR_SCREEN}after {C1_CSI} {RLO}reversed",
                           url=f"http://example.com/{CLEAR_SCREEN}{RLO}", source=f"web{C1_CSI}")
    assert glmdata(["inspect", stage, "-r", "spam"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in ("\x1b", "\x9b", RLO)), repr(out)
    assert "before\\x1b[2J\\x1b[Hafter \\x9b2J \\u202ereversed" in out
    assert "http://example.com/\\x1b[2J\\x1b[H\\u202e" in out and "web\\x9b2J" in out and "detail \\u202ex" in out


def test_inspect_lists_reasons_with_markup_as_written(tmp_path, capsys):
    stage = rejected_stage(tmp_path, MARKUP, "text")
    assert glmdata(["inspect", stage]) == 0
    assert MARKUP in capsys.readouterr().out
    assert glmdata(["inspect", stage, "-r", MARKUP]) == 0
    assert MARKUP in capsys.readouterr().out
    assert glmdata(["inspect", stage, "-r", "other[/]"]) == 1
    assert f"'other[/]'; reasons here: {MARKUP}" in capsys.readouterr().out


class Markup(HTMLParser):
    """Every element and attribute name of a page, and its text."""

    def __init__(self):
        super().__init__()
        self.elements, self.attributes, self.text = set(), set(), []

    def handle_starttag(self, tag, attrs):
        self.elements.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data):
        self.text.append(data)


def hostile_run(tmp_path):
    """The report fixture's run plus a stage whose name, documents, sources and reasons are attacks (a language
    each, so that every document is among the samples)."""
    workdir = make_run(tmp_path / "work")
    rows = []
    for i, attack in enumerate(HTML_ATTACKS + [MARKUP, CLEAR_SCREEN, RLO]):
        doc = {"id": f"e{i}{attack}", "text": f"中文 {attack} text", "url": attack, "source": f"src{attack}",
               "source_file": attack, "source_offset": i, "lang": f"l{i}", "lang_score": 0.5}
        rows.append((doc, f"reason{attack}" if i % 2 else None, f"detail{attack}"))
    write_stage(workdir, "evil x onclick=alert(1)", [rows], DOC_SCHEMA, report={"warnings": HTML_ATTACKS, "n": 1})
    return workdir


def test_report_page_takes_no_element_or_attribute_from_the_data(tmp_path):
    workdir = hostile_run(tmp_path)
    page = render_page(collect(str(workdir)))
    parsed = Markup()
    parsed.feed(page)
    assert parsed.elements <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "nav",
                               "a", "b", "i", "br", "span", "div", "code", "pre", "ul", "li", "details", "summary",
                               "table", "tr", "th", "td", "figure", "figcaption", "svg", "rect", "text", "line",
                               "polyline", "circle"}
    assert not {a for a in parsed.attributes if a.startswith("on")} and "src" not in parsed.attributes
    assert "<!--" not in page.replace("&lt;!--", "")
    text = "".join(parsed.text)
    for attack in HTML_ATTACKS:
        assert f"src{attack}" in text and f"中文 {attack} text" in text  # shown as written
    assert not any(c in page for c in ("\x1b", RLO)) and "\\u202e" in text and "\\x1b[2J" in text


def test_terminal_summary_shows_hostile_names_as_written(tmp_path):
    workdir = hostile_run(tmp_path)
    out = io.StringIO()
    write_report(str(workdir), console=Console(file=out, width=400))
    shown = out.getvalue()
    assert f"src{MARKUP}" in shown and "src\\x1b[2J\\x1b[H" in shown and "src\\u202e" in shown
    assert not any(c in shown for c in ("\x1b", RLO))


def test_a_carriage_return_is_white_space_on_the_page_and_escaped_in_the_terminal():
    """Ingest keeps CRLF documents as written: the page shows them as they are, the terminal (where a
    lone carriage return writes over the start of its line) as an escape."""
    from pipeline.report_text import escape_html, visible

    assert escape_html("line one\r\nline two\r") == "line one\r\nline two\r"
    assert visible("line one\r\nline two") == "line one\\x0d\nline two"



# Format characters (Unicode category Cf) that show nothing, with their escapes: they split a word so that
# it reads whole but matches no word list, or carry text no one sees (tag characters spell ASCII out of sight).
INVISIBLE = {"\u200b": "\\u200b", "\u200c": "\\u200c", "\u200d": "\\u200d", "\u200e": "\\u200e",
             "\u200f": "\\u200f", "\u2060": "\\u2060", "\u2064": "\\u2064", "\ufeff": "\\ufeff", "\xad": "\\xad",
             "\U000e0041": "\\U000e0041"}


def test_inspect_and_the_page_show_invisible_format_characters_as_escapes(tmp_path, capsys):
    from pipeline.report_text import escape_html

    text = "".join(f"fr{c}ee " for c in INVISIBLE)
    stage = rejected_stage(tmp_path, "spam", text)
    assert glmdata(["inspect", stage, "-r", "spam"]) == 0
    out = capsys.readouterr().out
    page = escape_html(text)  # how the page writes every text
    for c, escaped in INVISIBLE.items():
        assert c not in out and f"fr{escaped}ee" in out, escaped
        assert c not in page and f"fr{escaped}ee" in page, escaped


def test_a_trailing_backslash_shows_once_in_a_cell_a_line_and_a_styled_row(caplog):
    from rich.table import Table

    from pipeline.report_terminal import print_stage_summary
    from pipeline.report_text import plain

    out = io.StringIO()
    console = Console(file=out, width=200)
    table = Table()
    table.add_column("reason")
    table.add_row(plain("ends in C:\\"))
    console.print(table)
    two = plain("two at the end: C:\\\\")
    console.print(f"dropped: {two}; errors 0")
    caplog.set_level(logging.DEBUG)  # the full table, with the error rows in red
    print_stage_summary({"stage": "ingest", "seconds": 1.0, "engine": "spark", "in": {"docs": 1, "bytes": 9},
                         "kept": {"docs": 0, "bytes": 0}, "dropped": {},
                         "errors": {"bad path C:\\": {"docs": 1, "bytes": 9}}}, "/tmp/wd", console)
    shown = out.getvalue()
    assert "ends in C:\\ " in shown and "ends in C:\\\\" not in shown
    assert "two at the end: C:\\\\; errors 0" in shown
    assert "error: bad path C:\\ " in shown and "[/red]" not in shown
