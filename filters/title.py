"""The page's title judged by the shipped blocklists (quality's `title` rule).

Crawled Chinese pages with gambling or adult advertising injected often carry it in the title
only: CCNet and ChineseWebText titles read "<headline>_<betting site>" while the body is a copied
article that names the site once or not at all, under the body rules' two hits. A title is the
few words a site chose to show for a page, so one listed term there is strong evidence where one
in a long body is not (a news report may name a lottery once). The lists are the body's: the word
blocklist and the Chinese spam/adult lexicon, whose entries are site names and advertising
vocabulary rather than topic words, so a news headline about gambling policy matches none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from filters.blocklist import WordMatcher
from filters.normalize import normalize_chinese
from filters.repetition import Doc, Rejection, RuleSet, Signals


class TitledDoc(Doc):
    """A document with its title (None when the source has none: WET, most text dumps)."""

    def __init__(self, text: str, tokenize: Callable[[str], list[str]], url: str | None = None,
                 count_words: Callable[[str], int] | None = None, title: str | None = None):
        super().__init__(text, tokenize, url, count_words)
        self.title = title


@dataclass
class TitleBlocklist(RuleSet):
    """Rejects a document whose title holds at least `min_title_hits` entries of the word
    blocklist (`blocklist:title`) or of the Chinese spam lexicon (`zh:spam_title`), when that list
    finds at least `min_page_hits` in the title and the text together: a listed term in the title
    and a second one anywhere on the page. The body's own rules ask for two hits and a density
    (0.5 per 1,000 characters), which a long copied article naming the site once in its text and
    once in its title never reaches; a title's one term alone is not enough either, since a few
    entries of the lexicon are ordinary words too (a clean fashion headline holds one). The title
    is matched after the Chinese normalization the text gets (traditional to simplified script,
    full-width letters to ASCII). A `min_title_hits` of None or 0 disables the rule."""

    name: ClassVar[str] = "blocklist"
    words: list[str] = field(default_factory=list)
    spam_terms: list[str] = field(default_factory=list)
    min_title_hits: int | None = 1
    min_page_hits: int = 2

    def __post_init__(self):
        self._words = WordMatcher(self.words)
        self._spam = WordMatcher(self.spam_terms)

    def signal_types(self) -> dict[str, type]:
        return {"title_word_hits": int, "title_spam_hits": int}

    def judge(self, doc: Doc, signals: Signals) -> Rejection | None:
        title = getattr(doc, "title", None)
        if not title:
            return None
        title = normalize_chinese(title)
        words = signals["title_word_hits"] = self._words.count(title)
        spam = signals["title_spam_hits"] = self._spam.count(title)
        if not self.min_title_hits:
            return None
        for hits, matcher, reason in ((words, self._words, "blocklist:title"), (spam, self._spam, "zh:spam_title")):
            if hits >= self.min_title_hits:
                page = hits if hits >= self.min_page_hits else hits + matcher.count(doc.text)
                if page >= self.min_page_hits:
                    return Rejection(reason, page)
        return None
