"""Deterministic per-document randomness: the same draw for a document on any partitioning or engine."""
from __future__ import annotations

import hashlib


def seeded_uniform(seed: int, doc_id: str, salt: int | str) -> float:
    """A uniform number in [0, 1) from the seed, the document id and a salt (e.g. a repeat index)."""
    digest = hashlib.blake2b(f"{seed}\0{doc_id}\0{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64
