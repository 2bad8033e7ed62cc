"""encode: token ids of every document of the mix, with the shared tokenizer.

Writes `tokens` (list<int32>, no <eos>: the shards stage joins documents with it) and `n_tokens`
(int32) beside the columns that identify a document and place it in the mix (`IDENTITY_COLUMNS`);
its text and the signals of the stages before stay in mix/data under the same id (`keep_text`,
`keep_columns`: carry some along).
A document the mix repeats is encoded once, its copies taking the same ids (`encode_with_copies`).
The model is read through pipeline.storage (local, gs://, s3://) once per worker process and kept
in memory for every task that process runs. The stage reports the
measured bytes per token per language and mix source: better estimates for mix.bytes_per_token;
exact plans come from mix.count_tokens_with (README: "The mix with exact token counts").
"""
from __future__ import annotations

import contextlib
import functools
import gc
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import ConfigError, InputPath, register_section
from pipeline.registry import register_stage
from pipeline.runner import read_stats, stage_dir
from pipeline.stage import BatchResult, MapStage, StageRun, StageStats, present_columns, upstream_parts
from pipeline.stages.tokenizer import MODEL_FILE
from pipeline.worker_models import worker_tokenizer
from tokenizer.spm import SPACE_MARK, Tokenizer

SPACE_MARK_UTF8 = re.compile(re.escape(SPACE_MARK.encode()))
# What encode writes beside the tokens, of the mix's columns: the document's id (its key in mix/data
# and every stage before), its source, language and place in the mix. Reading and writing again the
# ~60 signal columns of the stages before took a third of the stage's CPU around SentencePiece's call
# (bench/encode.py --signals).
IDENTITY_COLUMNS = ("id", "source", "source_file", "source_offset", "lang", "mix_source", "mix_repeat")


def encode_column(tok: Tokenizer, texts: list[str] | list[bytes],
                  marked: set[int] | None = None) -> tuple[pa.Array, pa.Array]:
    """(tokens as list<int32>, n_tokens as int32) of `texts` (`marked`: see `Tokenizer.encode_flat`), built
    from one flat id array and its offsets: no Python list per document nor int per token (the conversion
    that cost ~13% of the stage)."""
    return token_column(*tok.encode_flat(texts, marked))


def token_column(ids: np.ndarray, offsets: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """(tokens as list<int32>, n_tokens as int32) of one flat id array, text i at ids[offsets[i]:offsets[i + 1]]."""
    tokens = pa.ListArray.from_arrays(pa.array(offsets).cast(pa.int32()), pa.array(ids))  # cast: overflow raises
    return tokens, pa.array(np.diff(offsets).astype(np.int32))


# Text kept with its ids, per task, of the latest documents of upsampled sources: the mix writes a
# batch's rows copy by copy (pipeline/stages/mix.py, `repeated_rows`), so a document's next copy comes
# up to a mix batch (4,096 input rows) later in the same part, past this stage's batch. A copy beyond it
# is encoded again. 32 MB holds a mix batch of documents of 8 kB; their ids take about as much again (4 bytes
# a token, 3.6 bytes of text a token in the demo's measure).
COPY_CACHE_BYTES = 32 << 20


class CopyCache:
    """Ids of recently encoded documents, by document id, for their copies further down the part. A copy
    takes them only if its text is its original's, so a hit gives the ids an encode would. Holds up to
    `max_bytes` of text, the oldest dropped first."""

    def __init__(self, max_bytes: int = COPY_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._bytes = 0

    def get(self, doc_id: str, text: bytes) -> np.ndarray | None:
        entry = self._entries.get(doc_id)
        return entry[1] if entry is not None and entry[0] == text else None

    def put(self, doc_id: str, text: bytes, ids: np.ndarray) -> None:
        old = self._entries.pop(doc_id, None)
        self._bytes -= len(old[0]) if old else 0
        if len(text) > self.max_bytes:
            return
        self._entries[doc_id] = (text, ids)
        self._bytes += len(text)
        while self._bytes > self.max_bytes:
            self._bytes -= len(self._entries.popitem(last=False)[1][0])


def encode_with_copies(tok: Tokenizer, batch: pa.RecordBatch, texts: list[bytes], marked: set[int],
                       upsampled: frozenset[str], cache: CopyCache) -> tuple[pa.Array, pa.Array]:
    """`encode_column` of `texts`, where a copy of a document of an `upsampled` mix source (mix_repeat
    k > 0, id `<id>#<k>`) takes its original's ids, from this batch or from `cache`, instead of being
    encoded again (an upsampled source costs about one encode, not one per copy); this batch's
    originals of such sources go into `cache`. The ids are the same either way."""
    names = batch.schema.names
    if not upsampled or "mix_repeat" not in names or "mix_source" not in names:
        return encode_column(tok, texts, marked)
    rows = np.flatnonzero(pc.fill_null(pc.is_in(batch.column("mix_source"), pa.array(sorted(upsampled))), False)
                          .to_numpy(zero_copy_only=False)).tolist()
    if not rows:
        return encode_column(tok, texts, marked)
    repeats = pc.fill_null(batch.column("mix_repeat"), 0).to_numpy(zero_copy_only=False)
    originals: dict[str, int] = {}  # id -> row, of this batch's originals
    taken: dict[int, int | np.ndarray] = {}  # copy row -> the row of its original, or its cached ids
    for i, doc_id in zip(rows, batch.column("id").take(pa.array(rows)).to_pylist()):
        if repeats[i] == 0:
            originals[doc_id] = i
            continue
        base = doc_id.rsplit("#", 1)[0]
        j = originals.get(base)
        found = j if j is not None and texts[j] == texts[i] else cache.get(base, texts[i])
        if found is not None:
            taken[i] = found
    encoded = [i for i in range(len(texts)) if i not in taken]
    position = {i: p for p, i in enumerate(encoded)}
    flat, offsets = tok.encode_flat([texts[i] for i in encoded], {position[i] for i in marked if i in position})
    ids = [flat[offsets[position[i]]:offsets[position[i] + 1]] if i in position else None for i in range(len(texts))]
    for i, found in taken.items():
        ids[i] = ids[found] if isinstance(found, int) else found
    for doc_id, i in originals.items():
        cache.put(doc_id, texts[i], ids[i].copy())  # a copy: a view would keep the batch's whole id array
    if not taken:  # every row encoded: the flat ids are the column's already
        return token_column(flat, offsets)
    ends = np.zeros(len(ids) + 1, np.int64)
    np.cumsum([a.size for a in ids], out=ends[1:])
    return token_column(np.concatenate(ids), ends)


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for a block that makes many acyclic objects (a str per text,
    an id array per text): the collections they would trigger walk every long-lived object of the worker
    process and find nothing to free (bench/encode.py --profile: "Python garbage collection")."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def document_texts(batch: pa.RecordBatch) -> tuple[list[bytes], set[int]]:
    """The batch's texts as UTF-8 bytes (null: b"") and the rows whose text holds a literal "▁" (see
    tokenizer.spm). Bytes, not str: SentencePiece reads a str through its UTF-8 form, so a str would be
    decoded from the column only to be encoded again; and the "▁" search runs once over the column's
    data, not once per document (bench/encode.py --profile: 0.035 -> 0.015 CPU s per 32 MB, and the
    SentencePiece call ~1-2% cheaper)."""
    texts = pc.fill_null(batch.column("text"), "").cast(pa.binary())
    return texts.to_pylist(), rows_containing(texts, SPACE_MARK_UTF8)


def rows_containing(column: pa.Array, pattern: re.Pattern) -> set[int]:
    """The rows of a binary column of UTF-8 texts in which `pattern` (whole characters) matches: one
    search over the column's data buffer. A match cannot span two rows, as no row ends inside a character."""
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2]
    if data is None or offsets[0] == offsets[-1]:
        return set()
    starts = np.fromiter((m.start() for m in pattern.finditer(memoryview(data)[offsets[0]:offsets[-1]])), np.int64)
    return set((np.searchsorted(offsets, starts + offsets[0], side="right") - 1).tolist())


@register_section("encode")
@dataclass
class EncodeSection:
    # A SentencePiece model to use instead of the tokenizer stage's (e.g. a released tokenizer);
    # null: <workdir>/tokenizer/tokenizer.model.
    model: InputPath | None = None
    batch_size: int = 4096  # documents per Arrow batch (memory per task ~ batch_size x document size)
    # Also write each document's text beside its tokens. Off: the text stays in mix/data under the
    # same id, and a second copy would double the stage's storage (and cost ~10% of its time).
    keep_text: bool = False
    # More columns of the mix to write beside the tokens and IDENTITY_COLUMNS (e.g. [url, q_score]);
    # each is read and written again for every document.
    keep_columns: list[str] = field(default_factory=list)

    def __post_init__(self):
        written = {"text", "tokens", "n_tokens"} & set(self.keep_columns)
        if written:
            raise ValueError(f"keep_columns: {sorted(written)} are the stage's own (keep_text writes the text)")


@register_stage
class EncodeStage(MapStage):
    name = "encode"
    upstream = "mix"
    depends_on = ("tokenizer",)
    output_version = 2  # 2: IDENTITY_COLUMNS and keep_columns beside the tokens, not every column of the mix

    def __init__(self, cfg):
        super().__init__(cfg)
        if self.section.model:
            self.depends_on = ()
        self.batch_size = self.section.batch_size
        self._report: dict = {}
        self.upsampled_sources: frozenset[str] = frozenset()  # the mix sources with copies (setup_driver)

    def model_uri(self) -> str:
        return self.section.model or storage.join(stage_dir(self.cfg, "tokenizer"), MODEL_FILE)

    @functools.cached_property
    def copy_cache(self) -> CopyCache:
        """One per task: each unpickles its own stage (Stage.__getstate__ leaves this out), and a mix part
        holds its own documents' copies."""
        return CopyCache()

    def setup_driver(self, stage_run: StageRun) -> None:
        mix_extra = (read_stats(stage_run.upstream_dir) or {}).get("extra", {})
        self.upsampled_sources = frozenset(
            key.partition("|")[2] for key, docs in mix_extra.items()
            if key.startswith("docs|") and docs > mix_extra.get("unique_" + key, docs))
        uri = self.model_uri()
        if not storage.exists(uri):
            raise FileNotFoundError(f"encode: no tokenizer model at {uri}: run `glmdata tokenizer train` first "
                                    "or set encode.model")
        worker_tokenizer(uri).check_special_tokens()
        parts = upstream_parts(stage_run.upstream_dir)
        if parts:
            columns = pq.read_schema(storage.open_input(parts[0])).names
            missing = [c for c in self.section.keep_columns if c not in columns]
            if missing:
                raise ConfigError(f"{self.cfg.path}: encode.keep_columns: {missing} not among the mix's columns "
                                  f"({', '.join(columns)})")

    def read_columns(self, schema: pa.Schema) -> list[str]:
        return present_columns(schema, (*IDENTITY_COLUMNS, *self.section.keep_columns, "text"))

    def uncompressed_columns(self) -> tuple[str, ...]:
        """The token ids, where their dictionary always fits its page (vocabularies under 65,536 pieces): its
        bit-packed indices are compressed already; zstd on top saved 7% of the column's bytes for 18% of
        its write's and 17% of its read's CPU (docs/benchmarks.md, encode). A larger vocabulary's ids fall
        back to plain encoding, which zstd does shrink."""
        fits = worker_tokenizer(self.model_uri()).vocab_size * 4 < storage.DICTIONARY_PAGE_LIMIT
        return ("tokens",) if fits else ()

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        with collector_paused():
            texts, marked = document_texts(batch)
            tokens, n_tokens = encode_with_copies(worker_tokenizer(self.model_uri()), batch, texts, marked,
                                                  self.upsampled_sources, self.copy_cache)
        table = pa.Table.from_batches([batch])
        if not self.section.keep_text:
            table = table.drop_columns(["text"])
        table = table.append_column("tokens", tokens).append_column("n_tokens", n_tokens)
        return BatchResult(table, [None] * batch.num_rows, extra=token_sums(batch, n_tokens))

    def execute(self, stage_run: StageRun) -> StageStats:
        stats = super().execute(stage_run)
        self._report = build_report(self.model_uri(), worker_tokenizer(self.model_uri()).sha256, stats.extra)
        measured = {lang: v["bytes_per_token"] for lang, v in self._report["languages"].items() if v["bytes_per_token"]}
        if measured:
            from rich.console import Console

            counted_with = getattr(self.cfg.sections.get("mix"), "count_tokens_with", None)
            Console(stderr=True).print(
                "encode: measured bytes per token " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(measured.items()))
                + (f"; the mix was planned on exact counts ({counted_with})" if counted_with else
                   "; for a mix planned on this tokenizer's exact counts, set mix.count_tokens_with to a copy of "
                   "its model (README: 'The mix with exact token counts')"))
        return stats

    def report_data(self, stage_run: StageRun) -> dict:
        return self._report


def token_sums(batch: pa.RecordBatch, n_tokens: pa.Array) -> dict[str, float]:
    """{"docs|tokens|bytes" + "|lang|mix_source": sum} of one batch."""
    def key_part(name: str) -> pa.Array:
        if name in batch.schema.names:
            return pc.fill_null(batch.column(name), "")
        return pa.array([""] * batch.num_rows, pa.string())

    keys = pc.binary_join_element_wise(key_part("lang"), key_part("mix_source"), "|")
    table = pa.table({"key": keys, "tokens": n_tokens.cast(pa.int64()),
                      "bytes": pc.fill_null(pc.binary_length(batch.column("text")), 0).cast(pa.int64())})
    grouped = table.group_by("key").aggregate([("tokens", "count"), ("tokens", "sum"), ("bytes", "sum")])
    sums = {}
    for key, docs, tokens, nbytes in zip(*(grouped.column(c).to_pylist()
                                           for c in ("key", "tokens_count", "tokens_sum", "bytes_sum"))):
        sums[f"docs|{key}"], sums[f"tokens|{key}"], sums[f"bytes|{key}"] = docs, tokens, nbytes
    return sums


def build_report(model: str, model_sha256: str, extra: dict[str, float]) -> dict:
    """The model (its URI and sha256: what `glmdata export megatron` reads the ids with); documents, tokens
    and bytes per token by language and by mix source."""
    by_source: dict[str, dict] = {}
    by_lang: dict[str, dict] = {}
    for key, value in sorted(extra.items()):
        kind, _, rest = key.partition("|")
        if kind not in ("docs", "tokens", "bytes"):
            continue
        lang, _, source = rest.partition("|")
        for table, name in ((by_lang, lang), (by_source, source)):
            entry = table.setdefault(name, {"docs": 0, "tokens": 0, "bytes": 0})
            entry[kind] += int(value)
        by_source[source]["lang"] = lang
    for entry in [*by_lang.values(), *by_source.values()]:
        entry["bytes_per_token"] = round(entry["bytes"] / entry["tokens"], 4) if entry["tokens"] else None
    return {"model": model, "model_sha256": model_sha256, "languages": by_lang, "sources": by_source}
