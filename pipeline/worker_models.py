"""Models read once per worker process (not per record or batch), keyed by their URI."""
from __future__ import annotations

from pipeline import storage
from tokenizer.spm import Tokenizer, load_proto

_TOKENIZERS: dict[str, Tokenizer] = {}


def worker_tokenizer(uri: str) -> Tokenizer:
    """The SentencePiece model at `uri` (any scheme storage reads), loaded on first use in this process."""
    if uri not in _TOKENIZERS:
        _TOKENIZERS[uri] = load_proto(storage.read_bytes(uri))
    return _TOKENIZERS[uri]
