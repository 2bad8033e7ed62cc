"""Which texts OpenCC's t2s can change, read from the dictionaries shipped in the opencc wheel.

OpenCC replaces dictionary keys found in the text by the entry's first value (Traditional ->
Simplified). A text that contains no key whose first value differs from it comes out unchanged,
so it need not go through OpenCC at all: most Simplified text, for which t2s is a pure cost.

The keys are read with the wheel's own `opencc_dict` tool (ocd2 -> text) from every dictionary
that t2s.json names. Single-character keys are a per-code-point flag; longer keys (phrases) are
matched in place. Should the tool or the dictionaries be missing, every text goes to OpenCC.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from pathlib import Path

import numba
import numpy as np
import opencc

_CHANGES_ALONE, _STARTS_PHRASE = 1, 2


def _dictionary_files(node) -> list[str]:
    """Every "file" named anywhere in an OpenCC config."""
    if isinstance(node, dict):
        own = [node["file"]] if node.get("type") in ("ocd2", "text") and "file" in node else []
        return own + [f for value in node.values() for f in _dictionary_files(value)]
    if isinstance(node, list):
        return [f for value in node for f in _dictionary_files(value)]
    return []


def _changing_keys(config: str = "t2s") -> list[str] | None:
    """Keys whose first value differs from the key, over every dictionary of the config; None when
    the dictionaries cannot be read."""
    clib = Path(opencc.__file__).parent / "clib"
    share, tool = clib / "share" / "opencc", clib / "bin" / "opencc_dict"
    try:
        files = _dictionary_files(json.loads((share / f"{config}.json").read_text(encoding="utf-8")))
        keys = []
        with tempfile.TemporaryDirectory(prefix="opencc-dict-") as tmp:
            for name in files:
                path = share / name
                if path.suffix == ".ocd2":
                    text = Path(tmp) / f"{path.stem}.txt"
                    subprocess.run([str(tool), "-i", str(path), "-o", str(text), "-f", "ocd2", "-t", "text"],
                                   check=True, capture_output=True, timeout=60)
                    path = text
                for line in path.read_text(encoding="utf-8").splitlines():
                    key, _, values = line.partition("\t")
                    if key and values.split(" ")[0] != key:
                        keys.append(key)
        return keys if files else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class _T2sChanges:
    def __init__(self, keys: list[str]):
        self.flags = np.zeros(0x110000, np.uint8)
        phrases = sorted(k for k in keys if len(k) > 1)
        for key in keys:
            if len(key) == 1:
                self.flags[ord(key)] |= _CHANGES_ALONE
        for phrase in phrases:
            self.flags[ord(phrase[0])] |= _STARTS_PHRASE
        encoded = [np.frombuffer(p.encode("utf-32-le"), np.uint32) for p in phrases]
        self.phrase_first = np.array([p[0] for p in encoded], np.uint32)
        self.phrase_bounds = np.cumsum([0] + [len(p) for p in encoded]).astype(np.int64)
        self.phrase_cps = np.concatenate(encoded) if encoded else np.zeros(0, np.uint32)


@numba.njit(cache=True, nogil=True)
def _any_change(cps, flags, phrase_first, phrase_bounds, phrase_cps):
    """True when a changing single character, or a changing phrase, occurs in `cps`."""
    n = cps.shape[0]
    for i in range(n):
        f = flags[cps[i]]
        if f == 0:
            continue
        if f & 1:
            return True
        p = np.searchsorted(phrase_first, cps[i])
        while p < phrase_first.shape[0] and phrase_first[p] == cps[i]:
            lo, hi = phrase_bounds[p], phrase_bounds[p + 1]
            if i + hi - lo <= n:
                same = True
                for j in range(hi - lo):
                    if cps[i + j] != phrase_cps[lo + j]:
                        same = False
                        break
                if same:
                    return True
            p += 1
    return False


_CHANGES: _T2sChanges | None = None
_UNREADABLE = False
_LOCK = threading.Lock()


def _changes() -> _T2sChanges | None:
    """Read once per process, on first use; None when the dictionaries cannot be read."""
    global _CHANGES, _UNREADABLE
    if _CHANGES is None and not _UNREADABLE:
        with _LOCK:
            if _CHANGES is None and not _UNREADABLE:
                keys = _changing_keys()
                if keys is None:
                    _UNREADABLE = True
                else:
                    _CHANGES = _T2sChanges(keys)
    return _CHANGES


def t2s_may_change(cps: np.ndarray) -> bool:
    """False only when OpenCC's t2s would return the text with these code points unchanged."""
    changes = _changes()
    if changes is None:
        return True
    return bool(_any_change(cps, changes.flags, changes.phrase_first, changes.phrase_bounds, changes.phrase_cps))
