"""What every stage records about the documents it routes, so that `glmdata report` needs no second
pass over the data: the stage's UnitWriter feeds each batch it keeps or rejects to a DocProfile,
whose small dict travels back with the unit's counts and is merged like them (stats.json "profile").

    groups    {"kept"|reason: {"source\\tlang": [documents, text bytes, tokens]}}
    lengths   {lang: {log2 bin of characters: documents}}              kept documents
    signals   {q_column: {lang: {bin: documents}}}                      kept, stages in SIGNAL_STAGES
    clusters  {log2 bin of dup_cluster_size: documents}                 kept, stages in CLUSTER_STAGES
    samples   {"kept"|reason: {lang: [[key, row], ...]}}                the SAMPLES_PER_GROUP smallest keys
    duplicates {"survivors"|"duplicates": [[key, row], ...]}            one cluster's members side by side

Bytes are UTF-8 bytes of the `text` column, the one unit of every stage (ingest's raw record bytes
stay in the conservation counts). A sample's key is a keyed hash of the document id (of its cluster
for duplicates), so "the k smallest keys" is the same set however the documents were partitioned:
merging two units' samples and keeping the k smallest gives the sample of their union.
Everything here is bounded by groups x SAMPLES_PER_GROUP, never by the number of documents.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEPT = "kept"
UNKNOWN = "?"  # a document without a source or language yet (before langid)
GROUP_SEP = "\t"
SAMPLES_PER_GROUP = 3
DUPLICATE_EXAMPLES = 4
SAMPLE_CHARS = 400
DUPLICATE_CHARS = 1200  # longer: the page shows the similarity of what it shows
# A sample's id, URL, source, file and cluster, as recorded (`shown_names`): a crawl's URL (a WARC header
# line, a JSON field) has no bound of its own; six samples of a 1 MB URL and id made stats.json, the
# report page and report.json 12 MB each.
NAME_CHARS = 300
NAME_FIELDS = ("id", "url", "source", "source_file", "doc_id", "cluster")
SAMPLE_SALT = b"glmdata-sample-v1"
TOKEN_COLUMN = "n_tokens"
CLUSTER_SIZE_COLUMN = "dup_cluster_size"
CLUSTER_ID_COLUMN = "dup_cluster_id"
DUPLICATE_REASON_PREFIX = "dup_"  # dedup's reasons; their detail is the survivor's id
SIGNAL_STAGES = {"quality": "q_"}  # stage -> prefix of the signal columns it adds
CLUSTER_STAGES = ("dedup",)  # stages that write dup_cluster_* (later stages only carry them along)
FRACTION_BINS = 20  # shares and ratios: 0.05-wide bins over [0, 1], the last bin holding >= 1
NONPOSITIVE_BIN = -1000  # counts and lengths <= 0 (below every quarter-octave bin)


# ---------------------------------------------------------------------------------------------
# Fixed bins, so that per-unit histograms add up


def log2_bins(values: np.ndarray) -> np.ndarray:
    """Power-of-two bins: 0 -> -1, 1 -> 0, 2..3 -> 1, 4..7 -> 2, ..."""
    with np.errstate(divide="ignore"):
        return np.where(values > 0, np.floor(np.log2(np.maximum(values, 1))), -1).astype(np.int64)


def is_fraction_signal(column: str) -> bool:
    return column.endswith(("_frac", "_ratio", "_nonl")) or column == "q_score"


def signal_bins(column: str, values: np.ndarray) -> np.ndarray:
    """Linear over [0, 1] for shares and ratios, quarter-octaves (bin b holds [2^(b/4), 2^((b+1)/4)))
    for counts and lengths, NONPOSITIVE_BIN for <= 0."""
    if is_fraction_signal(column):
        return np.clip(np.floor(values * FRACTION_BINS), 0, FRACTION_BINS).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        quarter_octaves = np.floor(4 * np.log2(values))
    return np.where(values > 0, quarter_octaves, NONPOSITIVE_BIN).astype(np.int64)


_SAMPLE_HASH = hashlib.blake2b(digest_size=8, key=SAMPLE_SALT)  # copied per value: cheaper than keying anew


def sample_key(value: str) -> int:
    """A keyed 63-bit hash (fits a signed 64-bit column, for the engines' own sorts)."""
    keyed = _SAMPLE_HASH.copy()
    keyed.update(value.encode("utf-8", "surrogatepass"))
    return int.from_bytes(keyed.digest(), "big") >> 1


# ---------------------------------------------------------------------------------------------
# Recording


def empty_profile() -> dict:
    return {"groups": {}, "lengths": {}, "signals": {}, "clusters": {}, "samples": {}, "duplicates": {}}


def _strings(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.schema.names:
        return np.full(table.num_rows, UNKNOWN, dtype=object)
    values = pc.fill_null(table.column(column).cast(pa.string()), UNKNOWN)
    return np.asarray(values.to_pylist(), dtype=object)


def _coded(table: pa.Table, column: str) -> tuple[list[str], np.ndarray]:
    """A column as strings (null or absent: UNKNOWN): its distinct values in sorted order and each row's
    index into them (no Python str per row: the groups and samples of a batch are found on the indices)."""
    if column not in table.schema.names:
        return [UNKNOWN], np.zeros(table.num_rows, dtype=np.int64)
    encoded = pc.fill_null(table.column(column).cast(pa.string()), UNKNOWN).combine_chunks().dictionary_encode()
    values = encoded.dictionary.to_pylist()
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return [values[i] for i in order], rank[encoded.indices.to_numpy()]


def _numbers(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.schema.names:
        return np.zeros(table.num_rows, dtype=np.float64)
    return np.nan_to_num(table.column(column).to_numpy().astype(np.float64))


def _add_histogram(into: dict, bins: np.ndarray) -> None:
    values, counts = np.unique(bins, return_counts=True)
    for b, n in zip(values.tolist(), counts.tolist()):
        into[str(b)] = into.get(str(b), 0) + n


def shown_names(row: dict) -> dict:
    """`row` with each of NAME_FIELDS longer than NAME_CHARS characters cut to NAME_CHARS, the end saying
    the whole's length; a row already cut stays as it is (the report cuts samples of older stats too)."""
    def cut(v: str) -> str:
        mark = f"… ({len(v):,} characters)"
        return v[:NAME_CHARS - len(mark)] + mark
    return {k: cut(v) if k in NAME_FIELDS and isinstance(v, str) and len(v) > NAME_CHARS else v
            for k, v in row.items()}


def _sample_row(table: pa.Table, i: int, details: list | None, chars: int) -> dict:
    row = {c: table.column(c)[i].as_py() for c in ("id", "url", "source", "lang", CLUSTER_ID_COLUMN,
                                                      CLUSTER_SIZE_COLUMN) if c in table.schema.names}
    text = table.column("text")[i].as_py() if "text" in table.schema.names else None
    if text is not None:
        row["chars"] = len(text)
        row["text"] = text[:chars]
    if details and details[i] is not None:
        row["detail"] = str(details[i])[:200]
    return row


def _bottom(entries: list, k: int) -> list:
    """The k entries with the smallest (key, id), one per (key, id) (the mix repeats documents): a
    deterministic choice among any union. Not one per id: ids are recorded cut (`shown_names`), and
    distinct documents' can be alike once cut."""
    out, seen = [], set()
    for e in sorted(entries, key=lambda e: (e[0], str(e[1].get("id")))):
        if (e[0], e[1].get("id")) not in seen:
            seen.add((e[0], e[1].get("id")))
            out.append(e)
    return out[:k]


def record(profile: dict, table: pa.Table, outcome: str, stage: str, details: list | None = None) -> None:
    """Add one routed batch: `outcome` is KEPT or the drop reason."""
    n = table.num_rows
    if n == 0:
        return
    source_names, source_codes = _coded(table, "source")
    lang_names, lang_codes = _coded(table, "lang")
    nbytes = (pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy().astype(np.int64)
              if "text" in table.schema.names else np.zeros(n, dtype=np.int64))
    tokens = _numbers(table, TOKEN_COLUMN).astype(np.int64)
    pairs, inverse = np.unique(source_codes * len(lang_names) + lang_codes, return_inverse=True)
    names = [source_names[p // len(lang_names)] + GROUP_SEP + lang_names[p % len(lang_names)] for p in pairs.tolist()]
    docs = np.bincount(inverse, minlength=len(names))
    byte_sums = np.bincount(inverse, weights=nbytes, minlength=len(names))
    token_sums = np.bincount(inverse, weights=tokens, minlength=len(names))
    groups = profile["groups"].setdefault(outcome, {})
    for name, d, b, t in sorted(zip(names, docs.tolist(), byte_sums.tolist(), token_sums.tolist())):
        g = groups.setdefault(name, [0, 0, 0])
        g[0] += int(d)
        g[1] += int(b)
        g[2] += int(t)

    ids = _strings(table, "id")
    keys_by_row = np.array([sample_key(i) for i in ids.tolist()], dtype=np.uint64)
    per_lang = profile["samples"].setdefault(outcome, {})
    for code, lang in enumerate(lang_names):
        rows = np.flatnonzero(lang_codes == code)
        best = rows[np.argsort(keys_by_row[rows], kind="stable")[:SAMPLES_PER_GROUP]]
        current = per_lang.get(lang, [])
        current += [[int(keys_by_row[i]), shown_names(_sample_row(table, int(i), details, SAMPLE_CHARS))] for i in best]
        per_lang[lang] = _bottom(current, SAMPLES_PER_GROUP)

    if outcome == KEPT:
        record_histograms(profile, table, stage, np.array(lang_names, dtype=object)[lang_codes])
        if stage in CLUSTER_STAGES and CLUSTER_ID_COLUMN in table.schema.names:
            survivors = np.flatnonzero(_numbers(table, CLUSTER_SIZE_COLUMN) > 1)
            if len(survivors):
                members = table.take(pa.array(survivors))
                _record_duplicates(profile, members, None, "survivors",
                                   [str(c) for c in members.column(CLUSTER_ID_COLUMN).to_pylist()])
    elif outcome.startswith(DUPLICATE_REASON_PREFIX) and details:
        _record_duplicates(profile, table, details, "duplicates", [str(d) for d in details])


def record_histograms(profile: dict, table: pa.Table, stage: str, langs: np.ndarray | None = None) -> None:
    """Kept documents' distributions: lengths per language, the stage's signals, cluster sizes
    (also what the report recomputes for a workdir written before profiles)."""
    langs = _strings(table, "lang") if langs is None else langs
    if "text" in table.schema.names:
        chars = pc.fill_null(pc.utf8_length(table.column("text")), 0).to_numpy().astype(np.int64)
        for lang in np.unique(langs).tolist():
            _add_histogram(profile["lengths"].setdefault(lang, {}), log2_bins(chars[langs == lang]))
    prefix = SIGNAL_STAGES.get(stage)
    if prefix:
        for column in table.schema.names:
            kind = table.schema.field(column).type
            if not column.startswith(prefix) or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                continue
            values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            present = ~np.isnan(values)
            for lang in np.unique(langs[present]).tolist():
                chosen = present & (langs == lang)
                _add_histogram(profile["signals"].setdefault(column, {}).setdefault(lang, {}),
                               signal_bins(column, values[chosen]))
    if stage in CLUSTER_STAGES and CLUSTER_SIZE_COLUMN in table.schema.names:
        sizes = _numbers(table, CLUSTER_SIZE_COLUMN).astype(np.int64)
        _add_histogram(profile["clusters"], log2_bins(sizes[sizes > 0]))


def _record_duplicates(profile: dict, table: pa.Table, details, side: str, cluster_ids: list[str]) -> None:
    """Cluster members keyed by their cluster's id: the survivors and the duplicates with the smallest
    keys belong to the same clusters, so the page can set them side by side."""
    keys = [sample_key(c) for c in cluster_ids]
    ids = [str(i) for i in table.column("id").to_pylist()]
    best = sorted(range(table.num_rows), key=lambda i: (keys[i], sample_key(ids[i])))
    current = profile["duplicates"].get(side, [])
    for i in best[:DUPLICATE_EXAMPLES]:
        current.append([keys[i], shown_names({**_sample_row(table, i, details, DUPLICATE_CHARS),
                                               "cluster": cluster_ids[i]})])
    profile["duplicates"][side] = _bottom(current, DUPLICATE_EXAMPLES)


# ---------------------------------------------------------------------------------------------
# Merging


def _merge_counts(into: dict, other: dict) -> None:
    for k, v in other.items():
        if isinstance(v, dict):
            _merge_counts(into.setdefault(k, {}), v)
        elif isinstance(v, list):
            into[k] = [a + b for a, b in zip(into.get(k, [0] * len(v)), v)]
        else:
            into[k] = into.get(k, 0) + v


def merge(into: dict, other: dict) -> None:
    """Add `other` (a profile dict) to `into`, in place."""
    if not other:
        return
    for part in ("groups", "lengths", "signals", "clusters"):
        _merge_counts(into.setdefault(part, {}), other.get(part, {}))
    samples = into.setdefault("samples", {})
    for outcome, per_lang in other.get("samples", {}).items():
        mine = samples.setdefault(outcome, {})
        for lang, entries in per_lang.items():
            mine[lang] = _bottom(mine.get(lang, []) + entries, SAMPLES_PER_GROUP)
    duplicates = into.setdefault("duplicates", {})
    for side, entries in other.get("duplicates", {}).items():
        duplicates[side] = _bottom(duplicates.get(side, []) + entries, DUPLICATE_EXAMPLES)


def group_totals(profile: dict, by: str) -> dict[str, dict[str, list[int]]]:
    """{"kept"|reason: {source or lang: [documents, text bytes, tokens]}} summed over the other key."""
    index = 0 if by == "source" else 1
    out: dict[str, dict[str, list[int]]] = {}
    for outcome, groups in profile.get("groups", {}).items():
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for key, values in groups.items():
            name = key.split(GROUP_SEP)[index]
            sums[name] = [a + b for a, b in zip(sums[name], values)]
        out[outcome] = dict(sorted(sums.items()))
    return out
