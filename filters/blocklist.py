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


@dataclass
class WordBlocklist(RuleSet):
    """Rejects a document with at least `min_hits` occurrences of blocklisted words (C4 dropped a
    page on one; one stray mention in a news report is common enough to ask for two)."""

    name: ClassVar[str] = "blocklist"
    words: list[str] = field(default_factory=list)
    min_hits: int = 2

    def __post_init__(self):
        self._pattern = word_pattern(self.words)

    def signal_types(self) -> dict[str, type]:
        return {"blocklist_word_hits": int}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        hits = signals["blocklist_word_hits"] = (
            sum(1 for _ in self._pattern.finditer(doc.text)) if self.words else 0)
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
