"""Training the shared SentencePiece model: the training-file format and the trainer's settings.

Why these settings (each one protects the exact round trip or the GLM token contract):
- special tokens at fixed ids (DESIGN.md): pad/unk/eos through SentencePiece's own ids, no bos, and
  the GLM markers as *control* symbols. Control symbols get the next ids (3..7) in the order given
  but are never matched in raw text, so a web page that contains the string "[MASK]" stays text
  instead of turning into a mask token.
- newline and tab as user-defined pieces (ids 8 and 9): SentencePiece reads its training file line
  by line, so a newline can never be learned from the data; as a user-defined piece it is one token
  in every document (GLM-130B also kept newlines as a token).
- identity normalization, no extra-whitespace removal, no dummy prefix, whitespace-only pieces
  allowed: the text comes back byte for byte, runs of spaces in code and poetry included.
- byte fallback: characters outside the vocabulary (emoji, rare Han characters) become UTF-8 byte
  pieces, never <unk>. Digits are split, one piece per digit. Because of byte fallback a rare
  character needs no piece of its own: `character_coverage` is below SentencePiece's CJK default
  so that those pieces go to words of both languages (see TrainSettings).
- the training file holds one line of a document per line, and lines longer than
  `max_line_bytes` are cut into pieces (at a space where there is one). SentencePiece silently skips
  sentences longer than its max_sentence_length (default 4192 bytes): with one document per line
  that dropped 58% of the bytes of a sample here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Literal

import sentencepiece as spm

from tokenizer.special_tokens import EOS, PAD, SPECIAL_TOKENS, UNK

CONTROL_SYMBOLS = [SPECIAL_TOKENS[i] for i in sorted(SPECIAL_TOKENS) if i not in (PAD, UNK, EOS)]
USER_DEFINED_SYMBOLS = ["\n", "\t"]  # ids 8 and 9
BREAK_CHARS = " \t\u3000。，！？；、.,;!?"  # where a too-long line is cut, preferably


@dataclass
class TrainSettings:
    vocab_size: int
    model_type: Literal["unigram", "bpe"] = "unigram"
    # Characters with a piece of their own: those covering 99.8% of the sample's characters. Rarer
    # ones (rare Han characters: fewer than ~2 per million characters) are written as their UTF-8
    # byte pieces. SentencePiece's CJK recommendation, 0.9995, reserves pieces for ~1,400 more of
    # them and leaves English at 0.894 of an English-only model's bytes/token at 24k pieces; 0.998
    # gives 0.907 (Chinese 0.950) with the same held-out tokens in total; lower values cost Chinese
    # more than English gains (bench/tokenizer_balance.py, table in docs/benchmarks.md).
    character_coverage: float = 0.998
    max_line_bytes: int = 8192  # longer lines are cut (see module docstring)
    max_piece_length: int = 16  # SentencePiece's default
    num_threads: int = 0  # 0: every core of this machine
    seed: int = 1234


def sentencepiece_arguments(settings: TrainSettings) -> dict:
    """Keyword arguments for SentencePieceTrainer.train."""
    return dict(
        vocab_size=settings.vocab_size,
        model_type=settings.model_type, character_coverage=settings.character_coverage,
        pad_id=PAD, unk_id=UNK, eos_id=EOS, bos_id=-1,
        pad_piece=SPECIAL_TOKENS[PAD], unk_piece=SPECIAL_TOKENS[UNK], eos_piece=SPECIAL_TOKENS[EOS],
        control_symbols=CONTROL_SYMBOLS, user_defined_symbols=USER_DEFINED_SYMBOLS,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, allow_whitespace_only_pieces=True,
        max_sentence_length=settings.max_line_bytes + 16, max_sentencepiece_length=settings.max_piece_length,
        input_sentence_size=0, shuffle_input_sentence=False,  # the sample is already drawn and bounded
        num_threads=settings.num_threads or os.cpu_count() or 1,
        minloglevel=2,  # errors only: its warnings are about the .vocab file, which the stage rewrites
    )


def train(settings: TrainSettings, input_file: str) -> bytes:
    """Train on `input_file` (see `write_training_lines`); returns the .model file's bytes.

    The lines go in through an iterator and the model comes back in memory, so the model records
    no temporary path: the same sample and settings give the same bytes."""
    import io

    if not os.path.getsize(input_file):  # SentencePiece would only say INTERNAL [!sentences_.empty()]
        raise RuntimeError(f"{input_file}: the training sample is empty (no line of text)")
    model = io.BytesIO()
    spm.set_random_generator_seed(settings.seed)
    with open(input_file, encoding="utf-8", newline="\n") as lines:  # "\r" inside a line stays text
        spm.SentencePieceTrainer.train(sentence_iterator=(line.rstrip("\n") for line in lines), model_writer=model,
                                       **sentencepiece_arguments(settings))
    return model.getvalue()


def split_long_line(line: str, max_bytes: int) -> list[str]:
    """`line` cut into pieces of at most `max_bytes` UTF-8 bytes, at a break character if possible."""
    if max_bytes < 4:  # a 4-byte character would fit no piece
        raise ValueError(f"max_line_bytes must be at least 4 (the longest UTF-8 character), got {max_bytes}")
    left = len(line.encode())  # bytes from `start` on
    if left <= max_bytes:
        return [line]
    # Each step looks at the next max_bytes characters only: encoding or slicing the rest of the line
    # per piece made a 16 MB line of emoji cost 14 s (quadratic).
    pieces, start = [], 0
    while left > max_bytes:
        window = line[start:start + max_bytes]  # holds at least max_bytes bytes
        cut = len(window.encode()[:max_bytes].decode(errors="ignore"))  # whole characters that fit
        brk = max(window.rfind(c, 0, cut) for c in BREAK_CHARS)
        if brk > cut // 2:
            cut = brk + 1
        pieces.append(window[:cut])
        left -= len(pieces[-1].encode())
        start += cut
    if start < len(line):
        pieces.append(line[start:])
    return pieces


def write_training_lines(text: str, out: IO[str], max_line_bytes: int) -> int:
    """Write one document as training lines; returns the UTF-8 bytes written (newlines excluded)."""
    written = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        for piece in split_long_line(line, max_line_bytes):
            out.write(piece)
            out.write("\n")
            written += len(piece.encode())
    return written
