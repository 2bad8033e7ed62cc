"""A labelled PII set built at run time: synthetic identifiers, valid and with broken check digits,
planted in real sentences, plus look-alikes that must never be touched (dates, prices, ISBNs,
version strings, order numbers, table digit runs).

Used by tests/test_pii.py and bench/pii.py. The identifiers are generated from a seed, never taken
from real people; the host sentences come from whatever prose the caller passes.
"""
from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path

from filters.pii import _CN_ID_CHECK, _CN_ID_WEIGHTS, _TW_LETTERS, luhn_valid
from filters.scoring import Score


@dataclass(frozen=True)
class Planted:
    kind: str | None  # None: a look-alike that must stay as it is
    value: str        # the exact text planted
    replaced: str     # the part a correct detector replaces ("" for look-alikes)
    start: int = -1   # where `value` sits in its document


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def cn_id(rng: random.Random, valid: bool = True) -> str:
    body = (f"{rng.choice('12345678')}{_digits(rng, 5)}{rng.randint(1950, 2010)}"
            f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{_digits(rng, 3)}")
    check = _CN_ID_CHECK[sum(int(c) * w for c, w in zip(body, _CN_ID_WEIGHTS)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def hk_id(rng: random.Random, valid: bool = True) -> str:
    letter, digits = rng.choice(string.ascii_uppercase), _digits(rng, 6)
    values = [36, ord(letter) - 55] + [int(d) for d in digits]
    expected = (11 - sum(v * w for v, w in zip(values, range(9, 1, -1))) % 11) % 11
    check = "A" if expected == 10 else str(expected)
    if not valid:
        check = rng.choice([c for c in "0123456789A" if c != check])
    return f"{letter}{digits}({check})"


def tw_id(rng: random.Random, valid: bool = True) -> str:
    letter = rng.choice(list(_TW_LETTERS))
    body = rng.choice("12") + _digits(rng, 7)
    code = _TW_LETTERS[letter]
    partial = code // 10 + (code % 10) * 9 + sum(int(c) * w for c, w in zip(body, range(8, 0, -1)))
    check = (10 - partial % 10) % 10
    if not valid:
        check = (check + rng.randint(1, 9)) % 10
    return f"{letter}{body}{check}"


def bank_card(rng: random.Random, valid: bool = True) -> str:
    prefix = rng.choice(["4", "51", "53", "62", "6222", "6228", "3530"])
    body = prefix + _digits(rng, 15 - len(prefix))
    check = next(str(d) for d in range(10) if luhn_valid(body + str(d)))
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = body + check
    return " ".join(number[i:i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else number


def email(rng: random.Random) -> str:
    user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))
    if rng.random() < 0.4:
        user += "." + "".join(rng.choice(string.ascii_lowercase) for _ in range(4))
    return f"{user}{rng.randint(0, 99)}@{rng.choice(['163.com', 'qq.com', 'gmail.com', 'outlook.com', 'mail.sina.com.cn'])}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2a03:2880:{rng.randint(0, 0xffff):x}::{rng.randint(1, 0xffff):x}"
    first = rng.choice([8, 23, 45, 61, 101, 114, 180, 203, 218])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def phone(rng: random.Random) -> str:
    mobile = f"1{rng.choice('3456789')}{_digits(rng, 9)}"
    return rng.choice([
        mobile,
        f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}",
        f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}",
        f"0{rng.choice(['10', '21', '755', '571'])}-{rng.randint(2, 9)}{_digits(rng, 7)}",
        f"({rng.randint(2, 9)}{_digits(rng, 2)}) {rng.randint(2, 9)}{_digits(rng, 2)}-{_digits(rng, 4)}",
        f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}",
    ])


def look_alike(rng: random.Random) -> str:
    """Numbers with a shape close to an identifier's that anonymization must leave alone."""
    return rng.choice([
        f"{rng.randint(1990, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"{rng.randint(1990, 2025)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
        f"¥{rng.randint(1, 99)},{_digits(rng, 3)}.{_digits(rng, 2)}",
        f"${rng.randint(1, 999)}.{_digits(rng, 2)}",
        f"ISBN 978-{rng.randint(0, 9)}-{_digits(rng, 3)}-{_digits(rng, 5)}-{rng.randint(0, 9)}",
        f"ISBN 978{_digits(rng, 10)}",
        f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
        f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
        f"订单号 {rng.randint(2019, 2025)}{_digits(rng, 14)}",
        f"{_digits(rng, 4)} {_digits(rng, 3)}",
        f"{rng.randint(10, 99)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}",
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"第{rng.randint(1, 999)}期",
    ])


GENERATORS = {
    "email": email, "ip": ip, "phone": phone, "cn_id": cn_id, "hk_id": hk_id, "tw_id": tw_id,
    "bank_card": bank_card,
}
CHECKSUM_KINDS = ("cn_id", "hk_id", "tw_id", "bank_card")
KEYWORD_KINDS = {"qq": ("QQ：", "扣扣", "QQ号 "), "wechat": ("微信：", "微信号 ", "WeChat: ")}


def plant(rng: random.Random) -> Planted:
    """One item: an identifier (45%), an identifier with a broken check digit (15%), a keyword id
    (10%) or a look-alike (30%)."""
    r = rng.random()
    if r < 0.45:
        kind = rng.choice(list(GENERATORS))
        value = GENERATORS[kind](rng)
        return Planted(kind, value, value)
    if r < 0.60:
        kind = rng.choice(CHECKSUM_KINDS)
        return Planted(None, GENERATORS[kind](rng, valid=False), "")
    if r < 0.70:
        kind = rng.choice(list(KEYWORD_KINDS))
        ident = (str(rng.randint(10_000, 9_999_999_999)) if kind == "qq"
                 else rng.choice(string.ascii_lowercase) + "".join(rng.choice(string.ascii_lowercase + string.digits + "_") for _ in range(rng.randint(5, 12))))
        return Planted(kind, rng.choice(KEYWORD_KINDS[kind]) + ident, ident)
    return Planted(None, look_alike(rng), "")


HOST_FILES = ("text/zh-news-thucnews.jsonl", "text/en-news-scrapinghub.jsonl", "text/zh-wiki-cmrc2018.jsonl",
              "text/en-speeches-sotu.jsonl")


def host_sentences(data: Path, per_document: int = 5) -> list[str]:
    """Sentences of real prose to plant identifiers in (up to `per_document` from each document),
    leaving out any that already hold an identifier-like run of 5+ digits or an @."""
    sentences = []
    for name in HOST_FILES:
        with open(data / name, encoding="utf-8") as f:
            for line in f:
                parts = re.split(r"(?<=[。！？.!?])\s*|\n", json.loads(line)["text"])
                sentences += [s for s in parts if 20 <= len(s) <= 200
                              and not re.search(r"[0-9]{5}|@", s)][:per_document]
    return sentences


def planted_documents(sentences: list[str], n: int, seed: int = 0) -> list[tuple[str, list[Planted]]]:
    """`n` documents of 2-5 real sentences, each followed by a planted item and a separator a page
    would use (space, Chinese or ASCII punctuation), so every item sits in real context."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        text, items = "", []
        for _ in range(rng.randint(2, 5)):
            item = plant(rng)
            text += rng.choice(sentences) + rng.choice([" ", "：", "，", " (", "\n"])
            items.append(Planted(item.kind, item.value, item.replaced, len(text)))
            text += item.value + rng.choice([" ", "。", "，", ")", "\n"])
        docs.append((text, items))
    return docs


def expected_span(item: Planted) -> tuple[int, int]:
    """The span a correct detector replaces: the identifier after its keyword, if any."""
    end = item.start + len(item.value)
    return end - len(item.replaced), end


def score(docs: list[tuple[str, list[Planted]]], find) -> tuple[dict[str, Score], int]:
    """Per-kind scores of `find(text) -> [PIIMatch]` on planted documents, and the number of
    look-alikes it touched. A hit counts when kind and span are exactly the planted ones; a match on
    a look-alike, a broken check digit or the wrong kind is a false positive of the kind it claimed.
    Matches wholly inside the host sentences are not scored (real prose may hold real identifiers)."""
    scores: dict[str, Score] = {}
    touched = 0
    for text, items in docs:
        expected = {expected_span(i): i.kind for i in items if i.kind}
        planted = [(i.start, i.start + len(i.value)) for i in items]
        matched = set()
        for m in find(text):
            if expected.get((m.start, m.end)) == m.kind:
                scores.setdefault(m.kind, Score()).tp += 1
                matched.add((m.start, m.end))
            elif any(s < m.end and m.start < e for s, e in planted):
                scores.setdefault(m.kind, Score()).fp += 1
                touched += any(s < m.end and m.start < e and not i.kind
                               for (s, e), i in zip(planted, items))
        for span, kind in expected.items():
            if span not in matched:
                scores.setdefault(kind, Score()).fn += 1
    return scores, touched
