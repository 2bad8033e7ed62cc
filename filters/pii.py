"""Personal identifiers in English and Chinese text: find them, validate them, replace them.

A few regular expressions, one per family of formats, find the candidates; each candidate is then
confirmed by the check its format defines, so that numbers which merely look like identifiers stay
untouched (an ID card number is tried before the phone number inside it):

| kind       | format                                                    | confirmed by                    |
|------------|-----------------------------------------------------------|---------------------------------|
| email      | local@domain.tld                                          | -                               |
| ip         | IPv4 dotted quad, IPv6 (also ::ffff:1.2.3.4)              | `ipaddress`: public (global) only; not after a version word |
| cn_id      | mainland resident ID, 18 characters                       | area code, birth date, ISO 7064 MOD 11-2 check |
| hk_id      | Hong Kong identity card, A123456(7)                       | its MOD 11 check digit          |
| tw_id      | Taiwan national ID, A123456789                            | its weighted MOD 10 check       |
| bank_card  | 13-19 digits, optionally in groups of four; several in one run of groups | issuer prefix and length, Luhn (in a run: every card) |
| phone      | +CC international, mainland mobile 1[3-9]x, landline 0xx-, North American (xxx) xxx-xxxx | digit count; nothing glued to it |
| qq         | 5-11 digits after QQ / 扣扣 / 企鹅号                        | the keyword                     |
| wechat     | an id or a mobile number after 微信 / WeChat / weixin / wx / VX | the keyword              |
| url_token  | a URL query parameter named like a secret (token, key, sid, password ...) | the parameter name |

Every digit-based pattern refuses to match inside a longer run of digits or letters, which is what
keeps order numbers, table cells, ISBNs and timestamps whole. Dates and prices never have the shape
of any kind above.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import date

KINDS = ("email", "ip", "cn_id", "hk_id", "tw_id", "bank_card", "phone", "qq", "wechat", "url_token")

# Placeholders in the default mode: one visible tag per kind, so a model learns the slot, not a value.
TAGS = {kind: f"<{kind.upper()}>" for kind in KINDS}
# FineWeb-style dummies: values shaped like the real thing that belong to nobody (reserved example
# domains, a documentation address block, ID numbers whose check character is wrong), so that a
# second pass over anonymized text finds no identifier in them.
DUMMIES = {
    "email": "email@example.com",
    "ip": "192.0.2.1",            # TEST-NET-1 (RFC 5737)
    "cn_id": "110101190001011000",
    "hk_id": "A000000(0)",
    "tw_id": "A100000000",
    "bank_card": "0000 0000 0000 0000",
    "phone": "000-0000-0000",
    "qq": "00000",                # QQ numbers never start with 0
    "wechat": "wxid0",            # WeChat ids have 6-20 characters
    "url_token": "REDACTED",
}

# Each family is one regular expression that starts with a character class or a literal, so that the
# regex engine skips ahead to where a match can begin instead of trying every branch at every
# character (5x faster than one alternation of all kinds with lookbehinds in front). What a
# lookbehind would say ("not glued to a longer run of digits or letters") is checked on the match.
# A family runs only when a cheap substring test says it can match at all.
_END = r"(?![0-9A-Za-z])"
_DIGIT_FAMILY = re.compile(
    r"[0-9](?:"
    r"(?P<cn_id>(?<=[1-8])[0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]" + _END + ")"
    # grouped: a whole run of four or more 4-digit groups and the short group that may end it, split
    # into cards by _card_spans, tried only where a run starts (a long run glued to a letter would
    # cost time quadratic in its length); failing that (a letter glued to the run), 4-4-4-4-3 (19-digit
    # UnionPay) or 4-4-4-x followed by at most one more 4-digit group. A space and a number may follow
    # (an expiry date, a CVV), a hyphen and a digit may not (a longer serial number).
    r"|(?P<bank_card>[0-9]{3}(?<!(?<![0-9])[0-9]{4}[ -][0-9]{4})(?:[ -][0-9]{4}){3,}"
    r"(?:[ -][0-9]{1,3}(?![0-9A-Za-z]|-[0-9])|(?![0-9A-Za-z]|-[0-9]|[ -][0-9]{4}(?![0-9])))"
    r"|[0-9]{3}(?:[ -][0-9]{4}){2}[ -](?:[0-9]{4}[ -][0-9]{3}|[0-9]{1,7})"
    r"(?![0-9A-Za-z]|-[0-9]|[ -][0-9]{4}[ -][0-9])"
    r"|[0-9]{12,18}" + _END + ")"
    # mainland mobile, bare or 3-4-4; landline 0xx(x)-xxxxxxx(x); North American xxx-xxx-xxxx
    r"|(?P<phone>(?<=1)[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})" + _END +
    r"|(?<=0)[1-9][0-9]{1,2}-[2-9][0-9]{6,7}" + _END +
    r"|(?<=[2-9])[0-9]{2}[-.][2-9][0-9]{2}[-.][0-9]{4}" + _END + ")"
    r"|(?P<ip>[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9A-Za-z]|[.-][0-9]))"
    r")")
_LETTER_ID_FAMILY = re.compile(
    r"[A-Z](?:(?P<tw_id>[12][0-9]{8}" + _END + r")|(?P<hk_id>[A-Z]?[0-9]{6}\s?(?:\([0-9A]\)|[0-9A])" + _END + "))")
_PLUS_PHONE = re.compile(r"\+(?P<phone>[1-9][0-9]{0,2}[ -]?(?:\(?[0-9]{1,4}\)?[ -]?){1,4}[0-9]{2,4})" + _END)
_PAREN_PHONE = re.compile(r"\((?P<phone>0[1-9][0-9]{1,2}\)\s?[2-9][0-9]{6,7}|[2-9][0-9]{2}\)\s?[2-9][0-9]{2}[-.][0-9]{4})" + _END)
# IPv6, also ending in a dotted quad (::ffff:1.2.3.4) whose first number the hex run takes
_IPV6 = re.compile(r"[0-9A-Fa-f:][0-9A-Fa-f:]{4,38}(?:(?:\.[0-9]{1,3}){3})?")
# An e-mail address is a local part and a domain, matched in two steps (_email_spans).
# Local part (RFC 6531 allows any letter): also Latin with diacritics (müller@, josé@; not × and ÷),
# Greek and Cyrillic; not scripts written without spaces (Han, kana, Thai ...), which run straight
# into an address written after them. One character class each: as fast as ASCII only.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u04ff]"
                          r"[A-Za-z0-9._%+\-\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u04ff]{0,63}@")
_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_URL_TOKEN = re.compile(r"[?&](?:access_token|api_key|apikey|auth|key|password|passwd|pwd|secret|session|sessionid|sid|token)=(?P<url_token>[^&#\s\"'<>]{6,})")
_QQ_WORDS = ("QQ", "qq", "Qq", "扣扣", "企鹅号")
# The spaces around an optional colon are written `\s*(?:[:：]\s*)?`, not `\s*[:：]?\s*`: with no colon, the
# two runs could split the same spaces every way, and a keyword before a long run of spaces without a
# number after it took time quadratic in the run (20k spaces: 2.5 s; tests/test_redos.py).
_QQ = re.compile(r"(?:QQ|qq|Qq|扣扣|企鹅号)(?:号码|号|群)?\s*(?:[:：]\s*)?(?P<qq>[1-9][0-9]{4,10})" + _END)
_WECHAT_WORDS = ("微信", "薇信", "威信", "V信", "WeChat", "wechat", "Wechat", "weixin", "WeiXin", "VX", "vx", "WX", "wx")
_WECHAT = re.compile(r"(?:微信|薇信|威信|V信|WeChat|wechat|Wechat|weixin|WeiXin|VX|vx|WX|wx)(?:\s?(?:号|号码|ID|id)(?![A-Za-z]))?\s*(?:[:：]\s*)?"
                     r"(?P<wechat>1[3-9][0-9]{9}|[A-Za-z][-_A-Za-z0-9]{5,19})" + _END)
_ANY_DIGIT = re.compile(r"[0-9]")
# What may not follow an IPv6 address: more of a longer run, or a fifth number after its dotted quad.
_CUT_OFF = re.compile(r"[0-9A-Za-z]|\.[0-9]")
# Domains reserved for examples and documentation (RFC 2606, RFC 6761): their addresses belong to nobody.
# Compared as suffixes: a pattern that backtracks over the domain took time quadratic in its length,
# and _EMAIL_DOMAIN has no length limit (a 40 kB run of "ab." after an "@": 4 s; tests/test_redos.py).
_RESERVED_NAMES = ("example.com", "example.net", "example.org", "example.edu")
_RESERVED_SUFFIXES = tuple("." + name for name in _RESERVED_NAMES) + (".example", ".invalid", ".test", ".localhost")
# A version word shortly before a dotted quad makes it a version number, not an address ("dev" or
# "Kyiv" is no "v").
_VERSION_BEFORE = re.compile(r"(?<![A-Za-z])(?:version|ver\.?|v|版本|版本号|build|release)\s*[:：]?\s*$", re.IGNORECASE)
# Characters that may not touch an identifier's start (a longer token would contain it).
_GLUED = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_GLUED_BEFORE = {"ip": _GLUED | {".", "-"}, "email": _GLUED | set("._%+-"), "phone+": _GLUED | {"+"}}

# ---------------------------------------------------------------------------------------------
# Check digits


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_id_valid(s: str) -> bool:
    """Mainland resident ID: a real birth date and the ISO 7064 MOD 11-2 check character."""
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == s[17].upper()


def hk_id_valid(s: str) -> bool:
    """Hong Kong identity card: letters (a space counts 36 when there is one) and six digits,
    weighted 9..2 (or 8..2), plus the check character makes a multiple of 11."""
    body = re.sub(r"[\s()]", "", s)
    letters, digits, check = body[:-7], body[-7:-1], body[-1]
    if len(letters) == 1:
        letters = " " + letters
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in letters] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1)))
    expected = (11 - total % 11) % 11
    return check == ("A" if expected == 10 else str(expected))


_TW_LETTERS = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36)))


def tw_id_valid(s: str) -> bool:
    """Taiwan national ID: the letter's two-digit code and nine digits, weighted 1,9,8..1,1, sum % 10 == 0."""
    code = _TW_LETTERS[s[0]]
    digits = [code // 10, code % 10] + [int(c) for c in s[1:]]
    weights = (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1)
    return sum(d * w for d, w in zip(digits, weights)) % 10 == 0


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer_known(d: str) -> bool:
    """Issuer prefixes and lengths of the networks in use (Visa, Mastercard, UnionPay, Amex, JCB,
    Discover, Diners, Maestro): a Luhn-valid run of digits without one is a table cell, not a card."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    if d[:2] in ("34", "37"):
        return n == 15
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":
        return n == 16
    if d[:2] == "62":
        return 16 <= n <= 19
    if "3528" <= d[:4] <= "3589":
        return 16 <= n <= 19
    if d[:4] == "6011" or d[:2] == "65" or "644" <= d[:3] <= "649":
        return 16 <= n <= 19
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305":
        return 14 <= n <= 19
    if d[:2] in ("50", "56", "57", "58", "67"):
        return 12 <= n <= 19
    return False


def _card_valid(s: str) -> bool:
    d = s.replace(" ", "").replace("-", "")
    return 13 <= len(d) <= 19 and _card_issuer_known(d) and luhn_valid(d)


_CARD_SEPARATOR = re.compile(r"[ -]")


def _card_spans(s: str) -> list[list[tuple[int, int]]]:
    """The cards a grouped candidate `s` may hold, each as its possible spans in `s`, longest first.

    A run of n 4-digit groups (and a group of 1-3 digits that may end it) holds cards on 16-digit
    boundaries from its start, each of a single card's shapes (4-4-4-4, 4-4-4-4-3, 4-4-4-x): n = 4k,
    the last card may take three digits after it (19 digits, or 16 and a CVV); n = 4k + 1, the group
    after the cards is a number of its own (an expiry, a PIN), or, for one card followed by a short
    group that is no card from the run's start, the group before it (a year, an order number; only
    then: each window tried finds cards in tables of numbers); n = 4k + 3 and a short group, the last
    card has 13-15 digits. Any other run is a table of numbers and holds none, and so does one whose
    short group the cards leave and a hyphen joins (a serial number). _candidates takes a run of
    several cards only when every one of them passes its check.
    """
    parts = _CARD_SEPARATOR.split(s)
    n = next((i for i, part in enumerate(parts) if len(part) != 4), len(parts))
    if n < 4:
        return [[(0, len(s))]]  # 4-4-4-x
    k, rest = divmod(n, 4)
    short = len(parts[-1]) if len(parts) > n else 0
    cards = [[(20 * i, 20 * i + 19)] for i in range(k)]
    if rest == 0 and short == 3:
        cards[-1].insert(0, (20 * (k - 1), len(s)))
    elif rest == 3 and short:
        cards.append([(20 * k, len(s))])
    elif n == 5 and short and s[-short - 1] != "-" and not _card_valid(s[:19]):
        # not a card and a number after it: a number, then a card and its short group (No. 2024 4111 ...)
        before = _card_spans(s[5:])
        return [[(5 + a, 5 + b) for a, b in before[0]]] if before else []
    elif rest > 1 or (short and s[-short - 1] == "-"):
        return []
    return cards


def _ip_public(s: str) -> bool:
    try:
        address = ipaddress.ip_address(s)
    except ValueError:
        return False
    return address.is_global and not address.is_multicast


def _confirm(kind: str, s: str, text: str, start: int) -> bool:
    if kind == "cn_id":
        return cn_id_valid(s)
    if kind == "hk_id":
        return hk_id_valid(s)
    if kind == "tw_id":
        return tw_id_valid(s)
    if kind == "bank_card":
        return _card_valid(s)
    if kind == "ip":
        if ":" in s:
            if s.count(":") < 2 or _CUT_OFF.match(text, start + len(s)):
                return False  # a time (12:30:45) or a cut-off run (as for IPv4, a fifth ".n" too)
            if not _ANY_DIGIT.search(s) and sum(1 for group in s.split(":") if group) < 3:
                return False  # a C++/Ruby scope of hex letters (Feed::Add, DB::Add)
        elif _VERSION_BEFORE.search(text, max(0, start - 12), start):
            return False
        return _ip_public(s)
    if kind == "phone":
        return 7 <= sum(c.isdigit() for c in s) <= 15
    if kind == "email":
        domain = s[s.index("@") + 1:].lower()  # _EMAIL_DOMAIN: a letter or digit after the "@", no other "@"
        return domain not in _RESERVED_NAMES and not domain.endswith(_RESERVED_SUFFIXES)
    return True


# ---------------------------------------------------------------------------------------------
# Finding and replacing


@dataclass(frozen=True)
class PIIMatch:
    kind: str
    start: int  # the span replaced (for keyword kinds: the value after the keyword)
    end: int


def _international_length(s: str) -> int:
    """Length of a +CC number without trailing groups that take it past E.164's 15 digits (the
    greedy pattern also swallows a year or a count written after the number)."""
    while sum(c.isdigit() for c in s) > 15 and (" " in s or "-" in s):
        s = s[:max(s.rfind(" "), s.rfind("-"))]
    return len(s)


def _email_spans(text: str):
    """The spans that one expression `local part + domain` finds left to right (finditer), with
    each "@"'s domain read once. A local part holds no "@", so the domain of every start that
    reaches an "@", and whether it matches, are the "@"'s alone; the one expression read the domain
    again from each of up to 64 starts before failing (`a` x 63 + "@" + "a." repeated: seconds a
    MB; docs/benchmarks.md). So an "@" whose domain matches takes the first local part that ends
    at it, starting no earlier than the last address's end, 64 characters before it (a local part
    has at most 64) and the "@" before it."""
    end = 0
    for domain in _EMAIL_DOMAIN.finditer(text):
        at = domain.start()
        lo = max(end, at - 64)
        lo = max(lo, text.rfind("@", lo, at) + 1)
        local = _EMAIL_LOCAL.search(text, lo, at + 1)
        if local:
            end = domain.end()
            yield local.start(), end


def _candidates(text: str, kinds: frozenset[str]):
    """(kind, start, end, glued-before set) of every family that can match, unconfirmed."""
    families = []
    if _ANY_DIGIT.search(text):
        families.append((_DIGIT_FAMILY, None))
        if "+" in text:
            families.append((_PLUS_PHONE, "phone+"))
        if "(" in text:
            families.append((_PAREN_PHONE, None))
        if any(w in text for w in _QQ_WORDS):
            families.append((_QQ, None))
        families.append((_LETTER_ID_FAMILY, None))
    if "=" in text:
        families.append((_URL_TOKEN, None))
    if "::" in text or text.count(":") >= 2:
        families.append((_IPV6, "ip"))
    if any(w in text for w in _WECHAT_WORDS):
        families.append((_WECHAT, None))
    if "@" in text and "email" in kinds:
        for start, end in _email_spans(text):
            yield "email", start, end, _GLUED_BEFORE["email"]
    for rx, glued_key in families:
        for m in rx.finditer(text):
            kind = m.lastgroup
            if rx is _IPV6:
                kind, span = "ip", m.span()
            elif rx is _DIGIT_FAMILY or rx is _LETTER_ID_FAMILY:
                span = (m.start(), m.end())  # the group starts after the family's first character
            elif rx is _PLUS_PHONE or rx is _PAREN_PHONE:
                span = m.span()
            else:
                span = m.span(kind)  # keyword kinds: the identifier after its keyword
            if kind not in kinds:
                continue
            glued = _GLUED_BEFORE.get(glued_key or kind, _GLUED)
            if kind != "bank_card" or span[1] - span[0] <= 19:
                yield kind, span[0], span[1], glued
                continue
            cards = _card_spans(text[span[0]:span[1]])
            if len(cards) == 1:  # find_pii confirms each span; the longest that checks wins
                for a, b in cards[0]:
                    yield kind, span[0] + a, span[0] + b, glued
                continue
            # several cards in one run: each one's longest span that checks, all of them or none
            picks = [next(((a, b) for a, b in spans if _card_valid(text[span[0] + a:span[0] + b])), None)
                     for spans in cards]
            if picks and None not in picks and not (span[0] and text[span[0] - 1] in glued):
                for a, b in picks:
                    yield kind, span[0] + a, span[0] + b, glued


def find_pii(text: str, kinds: frozenset[str] = frozenset(KINDS)) -> list[PIIMatch]:
    """Confirmed identifiers in `text`, left to right, never overlapping (the earlier start wins,
    then the kind listed first in KINDS, then the longer)."""
    if not text:
        return []
    found = []
    for kind, start, end, glued in _candidates(text, kinds):
        if start and text[start - 1] in glued and kind not in ("qq", "wechat", "url_token"):
            continue
        if text[start] == "+":
            end = start + _international_length(text[start:end])
        if _confirm(kind, text[start:end], text, start):
            found.append(PIIMatch(kind, start, end))
    found.sort(key=lambda m: (m.start, KINDS.index(m.kind), -m.end))
    kept, last_end = [], 0
    for m in found:
        if m.start >= last_end:
            kept.append(m)
            last_end = m.end
    return kept


@dataclass
class PIIAnonymizer:
    """Replace identifiers of `kinds` with a per-kind placeholder.

    mode: "tag" (`<EMAIL>`, `<PHONE>` ...) or "dummy" (FineWeb-style realistic values that belong to
    nobody); `replacements` overrides the text of single kinds.
    """

    kinds: tuple[str, ...] = KINDS
    mode: str = "tag"
    replacements: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown PII kind {unknown[0]!r}; expected one of: {', '.join(KINDS)}")
        unknown = sorted(set(self.replacements) - set(KINDS))
        if unknown:
            raise ValueError(f"replacements: unknown PII kind {unknown[0]!r}; expected one of: {', '.join(KINDS)}")
        if self.mode not in ("tag", "dummy"):
            raise ValueError(f"mode: expected 'tag' or 'dummy', got {self.mode!r}")
        base = TAGS if self.mode == "tag" else DUMMIES
        self._replacement = {k: self.replacements.get(k, base[k]) for k in KINDS}
        self._kinds = frozenset(self.kinds)

    def anonymize(self, text: str) -> tuple[str, list[PIIMatch]]:
        """(text with every identifier replaced, the identifiers found in the original text)."""
        matches = find_pii(text, self._kinds)
        if not matches:
            return text, matches
        out, pos = [], 0
        for m in matches:
            out.append(text[pos:m.start])
            out.append(self._replacement[m.kind])
            pos = m.end
        out.append(text[pos:])
        return "".join(out), matches
