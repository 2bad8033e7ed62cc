"""HTML to main text with resiliparse.

Chosen over trafilatura by `bench/extractors.py` (figures in docs/benchmarks.md): on the same pages
it is more than ten times faster, and its main-content mode drops menus, footers and link lists.
Block elements (paragraphs, headings, list items) come out one per line; blank lines and the
indentation resiliparse keeps for nesting are removed, so a paragraph is exactly one line.
"""
from __future__ import annotations

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree


def html_to_text(html: str) -> str:
    tree = HTMLTree.parse(html)
    text = extract_plain_text(tree, preserve_formatting=True, main_content=True, list_bullets=False,
                              alt_texts=False, links=False, form_fields=False, noscript=False)
    text = text.replace("\ufeff", "")  # byte-order marks inside pages (after a meta-declared charset)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())
