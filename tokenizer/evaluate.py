"""How good a tokenizer is, per language: the figures of `glmdata tokenizer eval`.

bytes/token      UTF-8 bytes of text per token (higher: fewer tokens for the same text)
tokens/word      English: tokens per whitespace-separated word
tokens/char      Chinese: tokens per non-space character
byte fallback    share of tokens that are byte pieces (characters the vocabulary lacks)
exact            share of documents whose decode(encode(text)) == text (must be 1.0)
and the vocabulary's split into Han, Latin, other, byte and special pieces.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from tokenizer.spm import SPACE_MARK, Tokenizer

HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
LATIN = re.compile("[A-Za-z\u00c0-\u024f]")


def piece_script(tok: Tokenizer, token_id: int) -> str:
    """'special', 'byte', 'han', 'latin' or 'other' (digits, punctuation, whitespace, other scripts)."""
    if tok.is_special(token_id) or tok.sp.is_control(token_id):
        return "special"
    if tok.is_byte(token_id):
        return "byte"
    piece = tok.piece(token_id).replace(SPACE_MARK, "")
    if HAN.search(piece):
        return "han"
    if LATIN.search(piece):
        return "latin"
    return "other"


def vocab_split(tok: Tokenizer) -> dict[str, int]:
    counts = Counter(piece_script(tok, i) for i in range(tok.vocab_size))
    return {k: counts.get(k, 0) for k in ("han", "latin", "other", "byte", "special")}


@dataclass
class LanguageFigures:
    docs: int = 0
    bytes: int = 0
    tokens: int = 0
    words: int = 0
    chars: int = 0
    byte_tokens: int = 0
    unk_tokens: int = 0
    exact_docs: int = 0

    def add(self, tok: Tokenizer, text: str, ids: list[int]) -> None:
        self.docs += 1
        self.bytes += len(text.encode())
        self.tokens += len(ids)
        self.words += len(text.split())
        self.chars += sum(1 for c in text if not c.isspace())
        self.byte_tokens += sum(1 for i in ids if tok.is_byte(i))
        self.unk_tokens += sum(1 for i in ids if i == tok.sp.unk_id())
        self.exact_docs += tok.decode(ids) == text

    def summary(self) -> dict:
        tokens = max(self.tokens, 1)
        return {
            "docs": self.docs, "bytes": self.bytes, "tokens": self.tokens,
            "bytes_per_token": round(self.bytes / tokens, 4),
            "tokens_per_word": round(self.tokens / max(self.words, 1), 4),
            "tokens_per_char": round(self.tokens / max(self.chars, 1), 4),
            "byte_fallback_rate": round(self.byte_tokens / tokens, 6),
            "unk_tokens": self.unk_tokens,
            "exact_round_trip": round(self.exact_docs / max(self.docs, 1), 6),
            "inexact_docs": self.docs - self.exact_docs,
        }


def evaluate(tok: Tokenizer, docs: Iterable[tuple[str, str]]) -> dict:
    """Figures per language for (lang, text) pairs, plus the vocabulary split."""
    figures: dict[str, LanguageFigures] = {}
    for lang, text in docs:
        figures.setdefault(lang or "unknown", LanguageFigures()).add(tok, text, tok.encode(text))
    return {"vocab_size": tok.vocab_size, "vocab_split": vocab_split(tok),
            "languages": {lang: f.summary() for lang, f in sorted(figures.items())}}


def eval_table(result: dict, title: str = "tokenizer"):
    """A rich Table of `evaluate`'s result (tok/word is for English, tok/char for Chinese; byte fb:
    the share of byte-fallback tokens)."""
    from rich.table import Table

    table = Table(title=f"{title}: vocab {result['vocab_size']:,} "
                        + ", ".join(f"{k} {v:,}" for k, v in result["vocab_split"].items()), show_edge=False)
    for col in ("lang", "docs", "MB", "bytes/tok", "tok/word", "tok/char", "byte fb", "exact"):
        table.add_column(col, justify="left" if col == "lang" else "right")
    for lang, f in result["languages"].items():
        table.add_row(lang, f"{f['docs']:,}", f"{f['bytes'] / 1e6:.2f}", f"{f['bytes_per_token']:.3f}",
                      f"{f['tokens_per_word']:.3f}", f"{f['tokens_per_char']:.3f}",
                      f"{f['byte_fallback_rate']:.3%}", f"{f['exact_round_trip']:.2%}")
    return table
