"""Text from crawled documents (and names derived from them) made safe to show, in a terminal
(`glmdata report`, `glmdata inspect`) and in the HTML report; sizes in the same units in both.

Crawled text carries control characters that act on whatever displays them: an ANSI escape
sequence (ESC, or the one-byte C1 CSI) can clear the reader's terminal or rewrite earlier lines,
and a bidirectional embedding, override or isolate (U+202A..U+202E, U+2066..U+2069) reverses the
rest of its line or paragraph, report text included; U+2028/U+2029 break a line in some displays
and not in others. The other format characters (Unicode category Cf) show nothing: a zero-width
space or joiner (U+200B..U+200D), a direction mark, a word joiner (U+2060..), a byte order mark
(U+FEFF), a soft hyphen, tag characters (U+E0000..) hide what a page really holds (`fr\\u200bee`
reads as "free" but matches no word list's "free") or carry text no one sees. `visible` replaces each of them with its
Python-style escape (`\\x1b`, `\\u202e`), so the reader sees that it was there and nothing acts on
it. Tabs and newlines are kept: samples are shown with their lines (on the HTML page carriage
returns too: white space there). Emoji joined by U+200D show as their parts with the escape between.
"""
from __future__ import annotations

import html

import regex
from rich.markup import escape

# C0 controls but tab and newline, DEL, C1 controls, the line and paragraph separators U+2028/U+2029
# (a break in some displays, none in others: a terminal table's rows would no longer line up), and
# every format character (the bidi controls among them). `regex` knows the category: `re` does not.
_ACTING_BEYOND_C0 = "\x7f-\x9f\u2028\u2029\\p{Cf}"
_ACTING = regex.compile(f"[\x00-\x08\x0b-\x1f{_ACTING_BEYOND_C0}]")
# A browser shows a carriage return as white space (the CRLF documents ingest keeps), a terminal goes
# back to the line's start with it, over what was written.
_ACTING_IN_HTML = regex.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{_ACTING_BEYOND_C0}]")


def _escaped(match: regex.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """`text` with every character that would act on its display written as an escape."""
    return _ACTING.sub(_escaped, text)


def plain(text) -> str:
    """`text` (or a name, a path) as a literal in rich markup: visible, and its brackets escaped, so that a
    reason such as `x[/]` or `[red]` reads as written instead of styling the line or raising MarkupError.
    Trailing backslashes are left as written (rich's escape doubles a last one, for markup written right
    after it, and it shows twice at the end of a cell or line): write no markup right after it; style
    it with a rich Text instead."""
    shown = visible(str(text))
    body = shown.rstrip("\\")
    return escape(body) + shown[len(body):]


def escape_html(text) -> str:
    """`text` as HTML text or a quoted attribute value: visible, then escaped (quotes included)."""
    return html.escape(_ACTING_IN_HTML.sub(_escaped, str(text)))


def docs_in(summary: dict) -> str:
    """The documents a stage received, and those it made beside them (the mix's copies, langid's parts
    of mixed-language documents), as "311 + 45 created": their sum read as "in" would not be what the
    stage before kept."""
    created = summary.get("created", {}).get("docs", 0)
    return f"{summary['in']['docs']:,}" + (f" + {created:,} created" if created else "")


def readable_bytes(n: float | None) -> str:
    """Bytes in a unit that scales (kB, MB, GB, TB, PB: powers of 1000), "–" for None."""
    if n is None:
        return "–"
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:,.2f} {unit}"
    return f"{int(n)} B"
