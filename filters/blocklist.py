"""Word and URL-domain blocklists, read from plain word-list files (one entry a line, `#` comments).

The lists are data the user configures (`quality.word_blocklists`, `quality.url_blocklists`); the
shipped defaults in filters/data/ are short lists of unambiguous adult and gambling site names
and terms. Matching is case-insensitive; a word entry matches as a whole word when it is Latin
(so "essex" never matches "sex", while "yabo" matches in "yabo手机版") and anywhere when it contains CJK characters (no spaces there).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Iterable
from urllib.parse import urlsplit

from filters.repetition import Doc, Rejection, RuleSet, Signals

_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def read_word_list(lines: Iterable[str]) -> list[str]:
    """Entries of a word-list file: stripped lines, without blank lines and `#` comments."""
    entries = []
    for line in lines:
        entry = line.split("#", 1)[0].strip() if not line.lstrip().startswith("re:") else line.strip()
        if entry:
            entries.append(entry)
    return entries


def word_pattern(words: Iterable[str]) -> re.Pattern:
    """One case-insensitive pattern: whole-word matching for Latin entries, substring matching for
    CJK ones, longest first; entries written `re:<regex>` are regular expressions."""
    latin, cjk, parts = set(), set(), []
    for w in words:
        if w.startswith("re:"):
            parts.append(f"(?:{w[3:]})")
        else:
            (cjk if _CJK.search(w) else latin).add(w.lower())
    if latin:
        # Latin words end where Latin letters and digits do (a CJK character next to one is a boundary).
        parts.append(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in sorted(latin, key=lambda w: (-len(w), w)))
                     + r")(?![a-z0-9])")
    if cjk:
        parts.append("|".join(re.escape(w) for w in sorted(cjk, key=lambda w: (-len(w), w))))
    return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)


# Python's re lets these four non-ASCII letters match ASCII ones under IGNORECASE (its documentation
# lists them); folding them before lower-casing keeps the pre-check below a superset of the pattern.
_IGNORECASE_EXTRAS = "\u0130\u0131\u017f\u212a"
_FOLD_EXTRAS = str.maketrans(dict(zip(_IGNORECASE_EXTRAS, "iisk")))


class WordMatcher:
    """Counts the matches of `word_pattern(words)` in a text.

    The case-insensitive pattern with its word-boundary look-behind is the slow part, and almost no
    document contains an entry at all: a plain search of the lower-cased entries in the lower-cased
    text rules those out first. It can only be wrong the safe way (a hit it finds may fail the
    boundary), so counts are the pattern's own. Without `re:` entries and with every entry letter
    ASCII or caseless (Han, kana) the pre-check is exact; otherwise every text goes to the pattern."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        self.pattern = word_pattern(words)
        literals = sorted({w.lower() for w in words}, key=lambda w: (-len(w), w))
        checkable = bool(words) and not any(w.startswith("re:") for w in words) and all(
            c.isascii() or c.lower() == c == c.upper() for w in literals for c in w)
        self._precheck = re.compile("|".join(map(re.escape, literals))) if checkable else None

    def count(self, text: str) -> int:
        if self._precheck is not None:
            if not text.isascii() and any(c in text for c in _IGNORECASE_EXTRAS):
                text_for_check = text.translate(_FOLD_EXTRAS)
            else:
                text_for_check = text
            if self._precheck.search(text_for_check.lower()) is None:
                return 0
        return sum(1 for _ in self.pattern.finditer(text))


@dataclass
class WordBlocklist(RuleSet):
    """Rejects a document with at least `min_hits` occurrences of blocklisted words (C4 dropped a
    page on one; one stray mention in a news report is common enough to ask for two)."""

    name: ClassVar[str] = "blocklist"
    words: list[str] = field(default_factory=list)
    min_hits: int = 2

    def __post_init__(self):
        self._matcher = WordMatcher(self.words)

    def signal_types(self) -> dict[str, type]:
        return {"blocklist_word_hits": int}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        hits = signals["blocklist_word_hits"] = self._matcher.count(doc.text)
        if self.min_hits and hits >= self.min_hits:
            return self.reject("word", hits)
        return None


def url_host(url: str | None) -> str:
    """The lower-case host name of a URL ('' when there is none); www. is dropped."""
    if not url:
        return ""
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.").rstrip(".")


@dataclass
class UrlBlocklist(RuleSet):
    """Rejects a document whose URL's host is a blocklisted domain or one of its subdomains, or
    whose host name contains a blocklisted term (as datatrove's URLFilter does with its banned
    words)."""

    name: ClassVar[str] = "blocklist"
    domains: list[str] = field(default_factory=list)
    host_terms: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._domains = frozenset(d.lower().removeprefix("www.").strip(".") for d in self.domains)
        self._host_terms = tuple(t.lower() for t in self.host_terms)

    def signal_types(self) -> dict[str, type]:
        return {}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        host = url_host(doc.url)
        if not host:
            return None
        labels = host.split(".")
        for i in range(len(labels) - 1):
            if ".".join(labels[i:]) in self._domains:
                return self.reject("url_domain", host)
        for term in self._host_terms:
            if term in host:
                return self.reject("url_term", host)
        return None
