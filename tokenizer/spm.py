"""The shared SentencePiece tokenizer as the pipeline, the shards and the trainer use it.

Depends on sentencepiece and numpy only (the trainer imports it on GPU machines without Spark). A
model is loaded once per process (`load`, `load_proto`) and reused for every document.

Exact round trip: SentencePiece writes spaces as U+2581 ("▁") and turns every "▁" back into a
space on decode, so a document that contains a literal "▁" would come back changed. `encode`
writes such a character as its three UTF-8 byte pieces instead, which decode to "▁" itself.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import sentencepiece as spm

from tokenizer.special_tokens import NUM_SPECIAL, SPECIAL_TOKENS, UNK

SPACE_MARK = "\u2581"  # what SentencePiece writes for a space


class SpecialTokenError(ValueError):
    """The model's first ids are not the special tokens of DESIGN.md."""


class Tokenizer:
    """A loaded SentencePiece model with exact encode/decode and piece checks."""

    def __init__(self, processor: spm.SentencePieceProcessor, sha256: str):
        self.sp = processor
        self.sha256 = sha256
        self.vocab_size = processor.get_piece_size()
        # Byte pieces for a literal "▁" (present in every byte-fallback model).
        self._space_mark_ids = [processor.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode()]

    def encode(self, text: str) -> list[int]:
        if SPACE_MARK not in text:
            return self.sp.encode(text)
        ids: list[int] = []
        for i, part in enumerate(text.split(SPACE_MARK)):
            if i:
                ids += self._space_mark_ids
            if part:
                ids += self.sp.encode(part)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text as Python lists (for columns, `encode_flat` is cheaper)."""
        return [self.encode(t) for t in texts]

    def encode_flat(self, texts: list[str] | list[bytes],
                    marked: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, offsets): the ids of every text in one int32 array, text i at ids[offsets[i]:offsets[i + 1]];
        the same ids as `encode`. One SentencePiece batch call on one thread (engines run one task per
        core) with numpy output: no Python int per token, so cheaper than an `encode` loop (bench/encode.py).
        Texts may be UTF-8 bytes, which SentencePiece reads as they are. `marked`: the indices of the texts
        that hold a literal "▁" (encoded apart, as `encode` does), when the caller has found them."""
        if marked is None:
            mark = SPACE_MARK.encode() if texts and isinstance(texts[0], bytes) else SPACE_MARK
            marked = {i for i, t in enumerate(texts) if mark in t}
        plain = [(t[:0] if i in marked else t) for i, t in enumerate(texts)] if marked else texts  # t[:0]: "" or b""
        arrays = self.sp.encode(plain, num_threads=1, out_type="numpy")
        for i in marked:
            text = texts[i]
            arrays[i] = np.array(self.encode(text.decode() if isinstance(text, bytes) else text), np.int32)
        offsets = np.zeros(len(arrays) + 1, np.int64)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        return (np.concatenate(arrays) if arrays else np.zeros(0, np.int32)), offsets

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def is_byte(self, token_id: int) -> bool:
        return self.sp.is_byte(token_id)

    def is_special(self, token_id: int) -> bool:
        return 0 <= token_id < NUM_SPECIAL

    def check_special_tokens(self) -> None:
        """Raise unless ids 0..7 are exactly the special tokens of DESIGN.md, as control symbols (<unk> as
        the unknown piece): a user-defined "[MASK]" would be matched in raw text, so a document that
        types it would get the special id."""
        found = {i: self.sp.id_to_piece(i) for i in range(min(NUM_SPECIAL, self.vocab_size))}
        if found != SPECIAL_TOKENS:
            raise SpecialTokenError(f"special tokens at ids 0..{NUM_SPECIAL - 1} are {found}, expected {SPECIAL_TOKENS}")
        typed = [SPECIAL_TOKENS[i] for i in SPECIAL_TOKENS
                 if not (self.sp.is_unknown(i) if i == UNK else self.sp.is_control(i))]
        if typed:
            raise SpecialTokenError(f"{', '.join(typed)} must be control symbols (<unk> the unknown piece), not "
                                    "pieces matched in text: train the model with `glmdata tokenizer` or give "
                                    "SentencePiece control_symbols for them")
        if not self._space_mark_ids or self.sp.unk_id() in self._space_mark_ids:
            raise SpecialTokenError("the model has no byte pieces: it must be trained with byte_fallback=true")


def load_proto(model_proto: bytes) -> Tokenizer:
    """A Tokenizer from the bytes of a .model file (cached: one per process and model)."""
    return _load_cached(hashlib.sha256(model_proto).hexdigest(), model_proto)


@functools.lru_cache(maxsize=4)
def _load_cached(sha256: str, model_proto: bytes) -> Tokenizer:
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    return Tokenizer(processor, sha256)


def load(model_file: str) -> Tokenizer:
    """A Tokenizer from a local .model file (cached by its content)."""
    with open(model_file, "rb") as f:
        return load_proto(f.read())
