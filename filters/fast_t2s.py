"""OpenCC's Traditional -> Simplified (t2s) without OpenCC wherever OpenCC would convert character by character.

OpenCC walks the text matching dictionary keys (its phrases first, then single characters) and
writes each key's first value. In a text where no key of two or more characters occurs, every
character is therefore converted as it would be alone: a table lookup. The wheel's own
`opencc_dict` tool lists the keys (ocd2 -> text) of every dictionary that t2s.json names, and
OpenCC itself says what each single-character key becomes alone (one call for all of them, once
per process; a character that is no key is copied). So `t2s_code_points` returns:

* the input, when no character changes (most Simplified text: OpenCC is a pure cost there);
* a converted copy, when only single characters change (most Traditional text);
* None, when a multi-character key occurs ("乾隆" stays, "回覆" -> "回复") or a character is
  rewritten by t2s's normalization step (CJK compatibility ideographs, which could form a
  phrase only after it): OpenCC must run. Also None for every text should the dictionaries be
  unreadable.
"""
from __future__ import annotations

import functools
import json
import logging
import subprocess
import tempfile
import threading
from pathlib import Path

import numba
import numpy as np
import opencc

from filters.normalize import to_simplified

_CHANGES_ALONE, _STARTS_PHRASE, _NEEDS_OPENCC = 1, 2, 4
_CONFIG = "t2s"


def _dictionary_files(node, in_normalization: bool = False) -> list[tuple[str, bool]]:
    """(file, under "normalization") for every dictionary file named anywhere in an OpenCC config."""
    if isinstance(node, dict):
        own = [(node["file"], in_normalization)] if node.get("type") in ("ocd2", "text") and "file" in node else []
        return own + [f for key, value in node.items()
                      for f in _dictionary_files(value, in_normalization or key == "normalization")]
    if isinstance(node, list):
        return [f for value in node for f in _dictionary_files(value, in_normalization)]
    return []


def _dictionary_keys() -> tuple[list[str], list[str], list[str]] | None:
    """(single-character keys, multi-character keys, keys of the normalization step) of the
    config's dictionaries; None when they cannot be read."""
    clib = Path(opencc.__file__).parent / "clib"
    share, tool = clib / "share" / "opencc", clib / "bin" / "opencc_dict"
    try:
        files = _dictionary_files(json.loads((share / f"{_CONFIG}.json").read_text(encoding="utf-8")))
        singles, phrases, normalized = [], [], []
        with tempfile.TemporaryDirectory(prefix="opencc-dict-") as tmp:
            for name, in_normalization in files:
                path = share / name
                if path.suffix == ".ocd2":
                    text = Path(tmp) / f"{path.stem}.txt"
                    subprocess.run([str(tool), "-i", str(path), "-o", str(text), "-f", "ocd2", "-t", "text"],
                                   check=True, capture_output=True, timeout=60)
                    path = text
                for line in path.read_text(encoding="utf-8").splitlines():
                    key = line.partition("\t")[0]
                    if key:
                        (normalized if in_normalization else singles if len(key) == 1 else phrases).append(key)
        return (singles, phrases, normalized) if files else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class _T2sTables:
    def __init__(self, singles: list[str], phrases: list[str], normalized: list[str]):
        self.flags = np.zeros(0x110000, np.uint8)
        self.alone = np.arange(0x110000, dtype=np.uint32)  # what each code point becomes alone
        singles = sorted(set(singles) - {"\n"})
        converted = to_simplified("\n".join(singles)).split("\n")  # no key holds a newline
        if len(converted) != len(singles):
            raise ValueError("OpenCC t2s removed or added a newline")
        for ch, out in zip(singles, converted):
            if out != ch:
                if len(out) == 1:
                    self.flags[ord(ch)] |= _CHANGES_ALONE
                    self.alone[ord(ch)] = ord(out)
                else:
                    self.flags[ord(ch)] |= _NEEDS_OPENCC
        for key in normalized:
            for ch in key:
                self.flags[ord(ch)] |= _NEEDS_OPENCC
        phrases = sorted(set(phrases))
        for phrase in phrases:
            self.flags[ord(phrase[0])] |= _STARTS_PHRASE
        encoded = [np.frombuffer(p.encode("utf-32-le"), np.uint32) for p in phrases]
        self.phrase_first = np.array([p[0] for p in encoded], np.uint32)
        self.phrase_bounds = np.cumsum([0] + [len(p) for p in encoded]).astype(np.int64)
        self.phrase_cps = np.concatenate(encoded) if encoded else np.zeros(0, np.uint32)


@numba.njit(cache=True, nogil=True)
def _t2s_kernel(cps, flags, alone, phrase_first, phrase_bounds, phrase_cps, out):
    """0: nothing changes; 1: `out` holds the per-character conversion; -1: OpenCC must run."""
    n = cps.shape[0]
    changed = False
    for i in range(n):
        c = cps[i]
        f = flags[c]
        out[i] = c
        if f == 0:
            continue
        if f & _NEEDS_OPENCC:
            return -1
        if f & _STARTS_PHRASE:  # does one of the phrases starting with c start here?
            p = np.searchsorted(phrase_first, c)
            while p < phrase_first.shape[0] and phrase_first[p] == c:
                lo, hi = phrase_bounds[p], phrase_bounds[p + 1]
                if i + hi - lo <= n:
                    j = 0
                    while j < hi - lo and cps[i + j] == phrase_cps[lo + j]:
                        j += 1
                    if j == hi - lo:
                        return -1
                p += 1
        if f & _CHANGES_ALONE:
            out[i] = alone[c]
            changed = True
    return 1 if changed else 0


_LOCK = threading.Lock()  # Beam runs tasks in threads: one build per process


def _tables() -> _T2sTables | None:
    """Built once per process, on first use; None when OpenCC's dictionaries cannot be read."""
    with _LOCK:
        return _build_tables()


@functools.cache
def _build_tables() -> _T2sTables | None:
    keys = _dictionary_keys()
    try:
        tables = _T2sTables(*keys) if keys else None
    except ValueError:  # OpenCC rewrote a newline: a per-character lookup would be unsound
        tables = None
    if tables is None:
        logging.getLogger(__name__).warning(
            "cannot read OpenCC's %s dictionaries from the opencc wheel: every Chinese text goes "
            "through OpenCC (same output, slower)", _CONFIG)
    return tables


def t2s_code_points(cps: np.ndarray) -> np.ndarray | None:
    """The code points of `to_simplified(text)` for the text whose code points are `cps` (uint8
    or uint32): `cps` itself when nothing changes; None where OpenCC must run."""
    t = _tables()
    if t is None:
        return None
    out = np.empty(len(cps), np.uint32)
    status = _t2s_kernel(cps, t.flags, t.alone, t.phrase_first, t.phrase_bounds, t.phrase_cps, out)
    return None if status < 0 else cps if status == 0 else out
