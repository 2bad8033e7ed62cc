"""Text from crawled documents (and names derived from them) made safe to show, in a terminal
(`glmdata report`, `glmdata inspect`) and in the HTML report.

Crawled text carries control characters that act on whatever displays them: an ANSI escape
sequence (ESC, or the one-byte C1 CSI) can clear the reader's terminal or rewrite earlier lines,
and a bidirectional embedding, override or isolate (U+202A..U+202E, U+2066..U+2069) reverses the
rest of its line or paragraph, report text included; U+2028/U+2029 break a line in some displays
and not in others. `visible` replaces each of them with its Python-style escape (`\\x1b`,
`\\u202e`), so the reader sees that it was there and nothing acts on it. Tabs and newlines are
kept: samples are shown with their lines (on the HTML page carriage returns too: white space there).
"""
from __future__ import annotations

import html
import re

from rich.markup import escape

# C0 controls but tab and newline, DEL, C1 controls, and the bidi controls that persist to the end
# of a paragraph (the single marks U+200E/U+200F/U+061C do not, and are left as they are), and the
# line and paragraph separators U+2028/U+2029 (a break in some displays, none in others: a terminal
# table's rows would no longer line up).
_ACTING_BEYOND_C0 = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ACTING = re.compile(f"[\x00-\x08\x0b-\x1f{_ACTING_BEYOND_C0}]")
# A browser shows a carriage return as white space (the CRLF documents ingest keeps), a terminal goes
# back to the line's start with it, over what was written.
_ACTING_IN_HTML = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{_ACTING_BEYOND_C0}]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every character that would act on its display written as an escape."""
    return _ACTING.sub(_escaped, text)


def plain(text) -> str:
    """`text` (or a name, a path) as a literal in rich markup: visible, and its brackets escaped, so that a
    reason such as `x[/]` or `[red]` reads as written instead of styling the line or raising MarkupError."""
    return escape(visible(str(text)))


def escape_html(text) -> str:
    """`text` as HTML text or a quoted attribute value: visible, then escaped (quotes included)."""
    return html.escape(_ACTING_IN_HTML.sub(_escaped, str(text)))
