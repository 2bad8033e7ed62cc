"""Which documents a later stage reads, so that a stage can leave the others alone.

A `Selection` is a list of (source values, language) pairs: a document is selected when its
`source` is one of the values or matches one of them that is a pattern (`source_pattern`, e.g.
"pile/*"; None: any source) and, once languages are decided (after language ID), its `lang` is the
language or unset. Before that the languages say what a source's documents
may turn out to be, which lets language ID skip a page that cannot be any of them. The mix builds
one per document stage from its sources (pipeline/stages/readers.py); the stage processes the
selected documents and counts the rest under NOT_READ, without copying them: they stay in the
upstream stage's output.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The drop reason of documents no later stage reads (counted, never written to rejected/).
NOT_READ = "not_in_mix"


def string_column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    """The column `name`, or nulls where the batch has none (a dump that never went through langid)."""
    if name in batch.schema.names:
        return batch.column(name)
    return pa.nulls(batch.num_rows, pa.string())


@functools.lru_cache(maxsize=256)
def source_pattern(name: str) -> re.Pattern | None:
    """A source name with `*` (any characters) or `?` (one character) matches source values by shape;
    None for a plain name, which matches itself only."""
    if "*" not in name and "?" not in name:
        return None
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in name), re.S)


def source_matches(value: str | None, names) -> bool:
    """Whether a `source` value is one of `names` or matches one of their patterns (None: no)."""
    return value is not None and any(
        value == name or (source_pattern(name) is not None and source_pattern(name).fullmatch(value))
        for name in names)


def in_sources(column: pa.Array | pa.ChunkedArray, names: list[str]) -> np.ndarray:
    """Rows of a `source` column that `source_matches` `names` (null: no). Patterns are tried on the
    column's distinct values only, a few per batch."""
    values = [name for name in names if source_pattern(name) is None]
    if len(values) < len(names):
        values += [v for v in pc.unique(column).to_pylist() if source_matches(v, names)]
    return pc.fill_null(pc.is_in(column, value_set=pa.array(values, pa.string())), False).to_numpy(
        zero_copy_only=False)


def matching(batch: pa.RecordBatch | pa.Table, sources: list[str] | None, lang: str | None) -> np.ndarray:
    """Rows whose `source` is one of `sources` (or matches a pattern among them; None: any) and whose
    `lang` is `lang` or unset (None: any)."""
    n = batch.num_rows
    in_source = np.ones(n, bool) if sources is None else in_sources(string_column(batch, "source"), sources)
    if lang is None:
        return in_source
    langs = string_column(batch, "lang")
    same_lang = pc.or_(pc.is_null(langs), pc.fill_null(pc.equal(langs, lang), False))
    return in_source & same_lang.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Selection:
    COLUMNS = ("source", "lang")  # what `mask` reads

    wanted: tuple[tuple[tuple[str, ...] | None, str], ...]  # (source values or None: any, lang)
    langs_decided: bool = True  # False before language ID: `lang` does not select yet

    def mask(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        selected = np.zeros(batch.num_rows, bool)
        for sources, lang in self.wanted:
            selected |= matching(batch, None if sources is None else list(sources),
                                 lang if self.langs_decided else None)
        return selected

    def langs_for(self, source: str | None) -> set[str]:
        """The languages some reader takes documents of `source` in."""
        return {lang for sources, lang in self.wanted if sources is None or source_matches(source, sources)}

    def fingerprint(self) -> str:
        """Part of a stage's config hash: reading other documents makes a different output."""
        return hashlib.sha256(json.dumps([self.wanted, self.langs_decided]).encode()).hexdigest()[:12]


def rows_read(selection: Selection | None, batch: pa.RecordBatch) -> np.ndarray | None:
    """`selection`'s mask of `batch` (None: no selection, every row is read)."""
    return None if selection is None else selection.mask(batch)


def split_selected(batch: pa.RecordBatch, selected: np.ndarray | None) -> tuple[pa.RecordBatch, int, int]:
    """(the `selected` rows (None: all), how many others, their text bytes)."""
    if selected is None or selected.all():
        return batch, 0, 0
    others = ~selected
    sizes = pc.binary_length(batch.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
    return batch.filter(pa.array(selected)), int(others.sum()), int(sizes[others].sum())
