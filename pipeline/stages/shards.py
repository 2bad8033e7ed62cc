"""`glmdata shards`: encoded documents -> packed GLM blank-infilling shards + manifest.

    <workdir>/shards/manifest.json, shard-NNNNN.arrow   (format: trainer/shard_format.py)

The token stream is every valid document of encode/data in part order, each followed by <eos>.
Three passes on the engine, with only small numbers reaching the driver:
1. count: per Parquet row group, the stream tokens it holds (one number per row group), plus the
   conservation counts and the language/source mix;
2. plan: the corruption of each shard is drawn from (seed, shard index) alone, without tokens, so
   each shard's stream length is known in advance; a prefix sum over shards gives every shard its
   exact token range;
3. build: each shard task reads only the row groups its range touches and writes its shard.
The same input and seed give byte-identical shards whatever the engine or its parallelism, and
every sequence is full except the corpus's last one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import ConfigError, bounded, register_section
from pipeline.glm_objective import BuildStats, GLMObjective, build_sequences
from pipeline.registry import register_command, register_stage
from pipeline.runner import StageNotReady, read_stats
from pipeline.stage import Stage, StageRun, StageStats, pending_file, upstream_parts
from tokenizer.special_tokens import EOS, NUM_SPECIAL, SPECIAL_TOKENS
from trainer.shard_format import (FORMAT_NAME, ShardDataset, ShardFormatError, file_sha256, read_manifest,
                                  shard_file_name, verify_sequence, write_manifest, write_shard)

log = logging.getLogger(__name__)

TOKEN_BYTES = 4  # documents are accounted in int32 token bytes: encode/data holds no text


@register_section("shards")
@dataclass
class ShardsSection:
    seq_len: int = bounded(2048, low=8)  # tokens per packed sequence (GLM-130B: 2048)
    mask_sample_len: int = 512  # [MASK] samples packed seq_len // mask_sample_len per sequence (GLM-130B: 4 x 512)
    mask_share: float = 0.3  # share of sequences corrupted with [MASK], the rest [gMASK] (GLM-130B: 30% / 70%)
    mask_ratio: float = 0.15  # share of a [MASK] sample's tokens in spans (GLM-130B: 15%)
    span_lambda: float = 3.0  # Poisson mean of span lengths (GLM-130B: 3)
    span_max: int = 39  # spans restricted to 1..span_max (GLM-130B: 39)
    gmask_min_ratio: float = 0.2  # generated share of a [gMASK] sample ~ U[min, 1] (GLM-130B min_gmask_ratio)
    sequences_per_shard: int = 4096  # 4096 x 2048 tokens x 18 bytes = 151 MB per shard file
    megatron_append_eos: bool = True  # `glmdata export megatron`: <eos> after each document (Megatron's --append-eod)

    def __post_init__(self):
        self.objective()  # validates the objective settings
        if self.sequences_per_shard < 1:
            raise ValueError(f"sequences_per_shard must be >= 1, got {self.sequences_per_shard}")

    def objective(self) -> GLMObjective:
        return GLMObjective(seq_len=self.seq_len, mask_sample_len=self.mask_sample_len, mask_share=self.mask_share,
                            mask_ratio=self.mask_ratio, span_lambda=self.span_lambda, span_max=self.span_max,
                            gmask_min_ratio=self.gmask_min_ratio)


# ---------------------------------------------------------------------------------------------
# Documents -> token stream


def tokenizer_model_uri(cfg) -> str:
    """The SentencePiece model encode used: encode.model when set, else the tokenizer stage's."""
    if "encode" in cfg.sections:
        from pipeline.stages.encode import EncodeStage

        return EncodeStage(cfg).model_uri()
    return storage.join(cfg.run.workdir, "tokenizer", "tokenizer.model")


def encode_stats(workdir: str) -> dict:
    """The encode stage's stats.json, {} when it has none."""
    return read_stats(storage.join(workdir, "encode")) or {}


def load_tokenizer(cfg, encode: dict):
    """(model URI, Tokenizer) of the model encode read the ids with, its special tokens checked: the one
    `encode` (its stats.json) recorded (URI and sha256: `glmdata export megatron --workdir` has no config
    to say, and <workdir>/tokenizer may hold another model since), else the config's."""
    from tokenizer.spm import SpecialTokenError, load_proto

    report = encode.get("report") or {}
    recorded, sha256 = report.get("model"), report.get("model_sha256")
    candidates = list(dict.fromkeys(filter(None, (recorded, tokenizer_model_uri(cfg)))))
    for uri in filter(storage.exists, candidates):
        try:
            tokenizer = load_proto(storage.read_bytes(uri))
            if sha256 in (None, tokenizer.sha256):
                tokenizer.check_special_tokens()
                return uri, tokenizer
        except (RuntimeError, OSError, SpecialTokenError) as e:  # not a SentencePiece model, or not ours
            raise ConfigError(f"{uri}: {e}") from None
    raise StageNotReady(f"no tokenizer model at {' or '.join(candidates)}"
                        + (f" with the sha256 encode recorded ({sha256})" if sha256 else "")
                        + ": run `glmdata tokenizer` and `glmdata encode` first, set encode.model, or copy the model "
                          "encode used back")


def relative_path(target: str, folder: str) -> str:
    """`target` relative to `folder` when both are on one filesystem (and bucket), so that a manifest
    moves with its workdir and names the same file whichever engine wrote it; else `target` as is."""
    (scheme_t, _, rest_t), (scheme_f, _, rest_f) = (p.rpartition("://") for p in (target, folder))
    if scheme_t != scheme_f or (scheme_t and rest_t.split("/", 1)[0] != rest_f.split("/", 1)[0]):
        return target
    return posixpath.relpath(rest_t, rest_f)


def external_model(cfg) -> str | None:
    encode = cfg.sections.get("encode")
    return getattr(encode, "model", None)


def document_verdicts(tokens: pa.ListArray, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths, valid, reasons; "" = valid) of each document: empty documents and ids outside the ordinary
    vocabulary (a special id inside a text would break the blank-infilling structure) are dropped."""
    tokens = tokens.combine_chunks() if isinstance(tokens, pa.ChunkedArray) else tokens
    lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(tokens).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    nonempty = lengths > 0
    lowest = np.zeros(len(lengths), dtype=np.int64)
    highest = np.zeros(len(lengths), dtype=np.int64)
    if nonempty.any():
        lowest[nonempty] = np.minimum.reduceat(values, starts[nonempty])
        highest[nonempty] = np.maximum.reduceat(values, starts[nonempty])
    reasons = np.where(~nonempty, "empty",
                       np.where(lowest < NUM_SPECIAL, "special_token_id",
                                np.where(highest >= vocab_size, "token_id_out_of_vocab", "")))
    return lengths, nonempty & (lowest >= NUM_SPECIAL) & (highest < vocab_size), reasons


@dataclass
class StreamPiece:
    """Tokens of one row group's stream (its valid documents, each followed by <eos>; a shard's range of
    them: `row_group_stream`), with per-token codes."""

    tokens: np.ndarray  # int32
    langs: np.ndarray  # int8 index into the run's languages
    sources: np.ndarray  # int32 index into the run's sources


def read_documents(pf: pq.ParquetFile, group: int) -> pa.Table:
    """The columns the shards need of one row group (mix_source when the mix stage wrote it)."""
    columns = ["tokens", "lang", "source"] + (["mix_source"] if "mix_source" in pf.schema_arrow.names else [])
    return pf.read_row_group(group, columns=columns)


def document_labels(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(lang, source) of each document. The source is the mix's source (`mix_source`, what the mix
    targets are set on) where there is one, else the dataset name; missing values become "und"
    (BCP 47) and "unknown"."""
    lang = table.column("lang").combine_chunks().fill_null("und")
    source = table.column("source").combine_chunks()
    if "mix_source" in table.column_names:
        source = pc.coalesce(table.column("mix_source").combine_chunks(), source)
    return lang, source.fill_null("unknown")


def row_group_stream(table: pa.Table, vocab_size: int, languages: list[str], sources: list[str],
                     lo: int = 0, hi: int | None = None) -> StreamPiece:
    """Tokens lo..hi (default: all) of the stream of one row group. Only the documents that overlap them
    are copied: a shard that takes a few tokens of a row group many times its size (documents of
    megabytes) pays for those tokens, not for every one of the row group's, once per shard."""
    lengths, valid, _ = document_verdicts(table.column("tokens"), vocab_size)
    stream_len = np.where(valid, lengths + 1, 0)
    ends = np.cumsum(stream_len)
    if hi is None:
        hi = int(ends[-1]) if len(ends) else 0
    take = valid & (ends > lo) & (ends - stream_len < hi)
    skip = int((ends - stream_len)[take][0]) if take.any() else 0  # stream offset of the first one taken
    values = pc.list_flatten(table.column("tokens").combine_chunks().filter(pa.array(take))).to_numpy(
        zero_copy_only=False)
    kept_len = lengths[take]
    out_len = kept_len + 1
    out = np.full(int(out_len.sum()), EOS, dtype=np.int32)
    src_start = np.cumsum(kept_len) - kept_len
    dst_start = np.cumsum(out_len) - out_len
    out[np.arange(len(values)) + np.repeat(dst_start - src_start, kept_len)] = values
    lang, source = document_labels(table)
    lang_codes = pc.index_in(lang, value_set=pa.array(languages, pa.string())).to_numpy(zero_copy_only=False)
    source_codes = pc.index_in(source, value_set=pa.array(sources, pa.string())).to_numpy(zero_copy_only=False)
    window = slice(lo - skip, hi - skip)
    return StreamPiece(out[window], np.repeat(lang_codes[take].astype(np.int8), out_len)[window],
                       np.repeat(source_codes[take].astype(np.int32), out_len)[window])


# ---------------------------------------------------------------------------------------------
# Engine tasks (picklable; each returns a small dict)


@dataclass
class CountPart:
    """Pass 1: stream tokens per row group, conservation counts, language and source mix."""

    vocab_size: int

    def __call__(self, path: str) -> dict:
        stats = StageStats()
        row_group_tokens: list[int] = []
        langs: dict[str, int] = {}
        sources: dict[str, int] = {}
        with storage.open_input(path) as f:
            try:
                pf = pq.ParquetFile(f)
            except Exception as e:  # unreadable file: counted, the run goes on (pyarrow raises several types)
                nbytes = storage.size(path)
                stats.input.add(0, nbytes)
                stats.errors["unreadable_parquet"].add(0, nbytes)
                log.error("shards: %s: %s", path, e)
            else:
                self._count_row_groups(pf, path, stats, row_group_tokens, langs, sources)
        return {"path": path, "row_group_tokens": row_group_tokens, "stats": stats.to_dict(),
                "languages": langs, "sources": sources}

    def _count_row_groups(self, pf: pq.ParquetFile, path: str, stats: StageStats, row_group_tokens: list[int],
                          langs: dict[str, int], sources: dict[str, int]) -> None:
        for g in range(pf.metadata.num_row_groups):
            try:
                table = read_documents(pf, g)
                lengths, valid, reasons = document_verdicts(table.column("tokens"), self.vocab_size)
            except Exception as e:  # a corrupt row group: its documents count as errors
                rows, nbytes = pf.metadata.row_group(g).num_rows, pf.metadata.row_group(g).total_byte_size
                stats.input.add(rows, nbytes)
                stats.errors["unreadable_row_group"].add(rows, nbytes)
                row_group_tokens.append(0)
                log.error("shards: %s row group %d: %s", path, g, e)
                continue
            stats.input.add(len(lengths), TOKEN_BYTES * int(lengths.sum()))
            for reason in np.unique(reasons).tolist():
                chosen = reasons == reason
                into = stats.kept if reason == "" else stats.dropped[reason]
                into.add(int(chosen.sum()), TOKEN_BYTES * int(lengths[chosen].sum()))
            row_group_tokens.append(int((lengths[valid] + 1).sum()))
            lang, source = document_labels(table)
            docs = pa.table({"lang": lang, "source": source, "n": lengths + 1}).filter(pa.array(valid))
            for column, into in (("lang", langs), ("source", sources)):
                for row in docs.group_by(column).aggregate([("n", "sum")]).to_pylist():
                    into[row[column]] = into.get(row[column], 0) + row["n_sum"]


def shard_rngs(seed: int, shard: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(plan, placement) generators of one shard: from the global seed and the shard index only."""
    base = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, shard]  # any int seed, negative too
    return (np.random.default_rng(np.random.SeedSequence(base + [0])),
            np.random.default_rng(np.random.SeedSequence(base + [1])))


@dataclass
class PlanShards:
    """Pass 2: stream tokens each shard of a block of shard indices consumes."""

    objective: GLMObjective
    seed: int
    sequences_per_shard: int

    def __call__(self, block: tuple[int, int]) -> dict:
        first, count = block
        return {"tokens": [
            self.objective.plan(shard_rngs(self.seed, i)[0], self.sequences_per_shard).total_tokens()
            for i in range(first, first + count)]}


@dataclass
class ShardRange:
    index: int
    start: int  # first stream token
    end: int  # one past the last
    row_groups: list[tuple[str, int, int]]  # (part path, row group, stream offset of its first token)


@dataclass
class BuildShard:
    """Pass 3: read a shard's exact token range, build its sequences, write it."""

    objective: GLMObjective
    seed: int
    sequences_per_shard: int
    vocab_size: int
    languages: list[str]
    sources: list[str]
    out_dir: str

    def __call__(self, shard: ShardRange) -> dict:
        pieces = []
        for path in dict.fromkeys(p for p, _, _ in shard.row_groups):  # each file opened once, in order
            with storage.open_input(path) as f:
                pf = pq.ParquetFile(f)
                for group, offset in ((g, o) for p, g, o in shard.row_groups if p == path):
                    table = read_documents(pf, group)
                    pieces.append(row_group_stream(table, self.vocab_size, self.languages, self.sources,
                                                   max(shard.start - offset, 0), shard.end - offset))
        tokens = np.concatenate([p.tokens for p in pieces])
        langs = np.concatenate([p.langs for p in pieces])
        sources = np.concatenate([p.sources for p in pieces])
        if len(tokens) != shard.end - shard.start:
            raise RuntimeError(f"shard {shard.index}: read {len(tokens)} tokens, expected {shard.end - shard.start} "
                               "(the encode output changed since the count pass?)")
        plan_rng, place_rng = shard_rngs(self.seed, shard.index)
        plan = self.objective.plan(plan_rng, self.sequences_per_shard)
        columns, kinds, stats = build_sequences(plan, tokens, langs, place_rng)
        fs, path = storage.filesystem(storage.join(self.out_dir, shard_file_name(shard.index)))
        # on an object store a rename is a copy: the stage's commit copies the file into place once
        entry = write_shard(path, columns, kinds, filesystem=fs, rename=storage.renames_folders(self.out_dir))
        written = entry.pop("written", None)
        entry["languages"] = _named_counts(langs, self.languages)
        entry["sources"] = _named_counts(sources, self.sources)
        return {"entry": entry, "build": stats.to_dict(), "written": written}


def _named_counts(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(codes.astype(np.int64), minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts.tolist()) if n}


# ---------------------------------------------------------------------------------------------
# The stage


@register_stage
class ShardsStage(Stage):
    name = "shards"
    upstream = "encode"
    depends_on = ("tokenizer",)

    def __init__(self, cfg):
        super().__init__(cfg)
        if external_model(cfg):  # encode used a model of its own, not the tokenizer stage's
            self.depends_on = ()
        self._report: dict = {}

    def input_paths(self) -> list[str]:
        return [m for m in [external_model(self.cfg)] if m]

    def execute(self, stage_run: StageRun) -> StageStats:
        section: ShardsSection = self.section
        objective = section.objective()
        engine = stage_run.engine
        model_path, tokenizer = load_tokenizer(self.cfg, encode_stats(self.cfg.run.workdir))

        # 1. count
        parts = upstream_parts(stage_run.upstream_dir)
        counted = engine.map_units("shards: count", CountPart(tokenizer.vocab_size), parts)
        total = StageStats()
        for r in counted:
            total.merge(StageStats.from_dict(r["stats"]))
        languages = sorted(set().union(*(r["languages"] for r in counted)))
        sources = sorted(set().union(*(r["sources"] for r in counted)))
        if len(languages) > 127:
            raise ValueError(f"shards: {len(languages)} languages do not fit the int8 langs column")
        row_groups = []  # (path, row group, stream offset, tokens): one entry per row group
        offset = 0
        for r in counted:
            for g, n in enumerate(r["row_group_tokens"]):
                if n:
                    row_groups.append((r["path"], g, offset, n))
                offset += n
        stream_tokens = offset

        # 2. plan: every shard's token range
        bounds = self._shard_bounds(engine, objective, section.sequences_per_shard, stream_tokens)
        group_start = np.array([o for _, _, o, _ in row_groups], dtype=np.int64)
        first = np.searchsorted(group_start, bounds[:-1], side="right") - 1  # the group holding each start
        last = np.searchsorted(group_start, bounds[1:], side="left")  # one past the group holding each end
        ranges = [ShardRange(i, bounds[i], bounds[i + 1], [(p, g, o) for p, g, o, _ in row_groups[first[i]:last[i]]])
                  for i in range(len(bounds) - 1)]

        # 3. build
        task = BuildShard(objective, self.seed, section.sequences_per_shard, tokenizer.vocab_size,
                          languages, sources, stage_run.tmp_dir)
        built = engine.map_units("shards: build", task, ranges)
        entries = [r["entry"] for r in built]
        pending = {r["entry"]["file"]: r["written"] for r in built if r["written"]}
        if pending:  # the shards left under temporary names, for the commit (runner.commit_output)
            storage.write_text(pending_file(stage_run.tmp_dir, "shards"), json.dumps(pending, sort_keys=True))
        build = BuildStats.empty(objective)
        for r in built:
            build.merge(r["build"])

        manifest = {
            "seq_len": objective.seq_len, "vocab_size": tokenizer.vocab_size, "languages": languages,
            "sources": sources, "tokenizer": {"file": relative_path(model_path, stage_run.stage_dir), "sha256": tokenizer.sha256},
            "special_tokens": {str(i): s for i, s in SPECIAL_TOKENS.items()},
            "objective": dataclasses.asdict(objective), "seed": self.seed,
            "sequences_per_shard": section.sequences_per_shard, "stream_tokens": stream_tokens,
            "totals": {k: sum(e[k] for e in entries) for k in ("samples", "tokens", "loss_tokens")},
            "shards": entries,
        }
        fs, fs_dir = storage.filesystem(stage_run.tmp_dir)
        write_manifest(fs_dir, manifest, filesystem=fs)

        total.extra["units"] = len(parts)
        total.extra["shards"] = len(entries)
        for key in ("samples", "tokens", "loss_tokens"):
            total.extra[key] = manifest["totals"][key]
        total.extra["stream_tokens"] = stream_tokens
        self._report = shard_report(entries, build, languages, sources)
        return total

    def _shard_bounds(self, engine, objective: GLMObjective, per_shard: int, stream_tokens: int) -> list[int]:
        """Stream offsets where shards start, then the stream's end. Shard plans are computed on
        the engine in blocks, sized from the first shard's plan, until they cover the stream."""
        bounds = [0]
        if stream_tokens == 0:
            return bounds
        typical = objective.plan(shard_rngs(self.seed, 0)[0], per_shard).total_tokens()
        task = PlanShards(objective, self.seed, per_shard)
        while bounds[-1] < stream_tokens:
            first = len(bounds) - 1
            wanted = math.ceil((stream_tokens - bounds[-1]) / typical * 1.05) + 1
            block = max(16, math.ceil(wanted / 64))  # at most 64 engine tasks per round, 16+ plans each
            blocks = [(a, min(block, first + wanted - a)) for a in range(first, first + wanted, block)]
            planned = engine.map_units("shards: plan", task, blocks)
            for n in (n for r in planned for n in r["tokens"]):
                if bounds[-1] >= stream_tokens:
                    break
                bounds.append(min(bounds[-1] + n, stream_tokens))
        return bounds

    def report_data(self, stage_run: StageRun) -> dict:
        return self._report


def shard_report(entries: list[dict], build: BuildStats, languages: list[str], sources: list[str]) -> dict:
    """Aggregates for `glmdata report`: small lists and dicts only."""
    tokens = sum(e["tokens"] for e in entries)
    loss = sum(e["loss_tokens"] for e in entries)
    lang_tokens = {lang: sum(e["languages"].get(lang, 0) for e in entries) for lang in languages}
    source_tokens = {src: sum(e["sources"].get(src, 0) for e in entries) for src in sources}
    return {
        "format": FORMAT_NAME,
        "shards": len(entries),
        "sequences": sum(e["samples"] for e in entries),
        "tokens_per_shard": [e["tokens"] for e in entries],
        "tokens": tokens,
        "loss_tokens": loss,
        "loss_token_share": loss / tokens if tokens else 0.0,
        "mask_sequences": build.mask_sequences,
        "gmask_sequences": build.gmask_samples,
        "mask_samples": build.mask_samples,
        "gmask_samples": build.gmask_samples,
        "mask_ratio_achieved": build.masked_tokens / build.mask_sample_tokens if build.mask_sample_tokens else 0.0,
        "span_length_hist": {str(i): int(n) for i, n in enumerate(build.span_length_hist.tolist()) if n},
        "gmask_ratio_hist": [int(n) for n in build.gmask_ratio_hist.tolist()],
        "dropped_spans": build.dropped_spans,
        "shortened_spans": build.shortened_spans,
        "tokens_per_language": lang_tokens,
        "tokens_per_source": source_tokens,
    }


# ---------------------------------------------------------------------------------------------
# glmdata shards verify <dir>


def verify_shards(shards_dir: str, checksums: bool = True, max_per_shard: int = 5, progress=None) -> list[str]:
    """Every problem of a local shards folder: checksums, schema, manifest counts, id ranges and the
    blank-infilling invariants of every sequence (`verify_sequence`). [] means it is sound."""
    try:
        manifest = read_manifest(shards_dir)
    except ShardFormatError as e:
        return [str(e)]
    malformed = _malformed_entries(manifest)
    if malformed:  # every later check reads these keys
        return malformed
    problems = _verify_manifest(manifest, shards_dir)
    for entry in manifest["shards"]:
        path = storage.join(shards_dir, entry["file"])
        if not storage.exists(path):
            problems.append(f"{entry['file']}: missing")
        elif checksums and file_sha256(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 differs from the manifest")
    if problems:
        return problems
    try:
        dataset = ShardDataset(shards_dir)
    except (ShardFormatError, OSError, pa.ArrowInvalid) as e:
        return [str(e)]
    first = 0
    for entry in manifest["shards"]:
        try:
            found = _verify_shard(dataset, first, entry, progress)
        except (ShardFormatError, OSError, pa.ArrowInvalid) as e:
            found = [f"{entry['file']}: {e}"]
        problems += found[:max_per_shard] + ([f"{entry['file']}: ... {len(found) - max_per_shard} more"]
                                             if len(found) > max_per_shard else [])
        first += entry["samples"]
    return problems


ENTRY_KEYS = {"file": str, "sha256": str, "samples": int, "tokens": int, "loss_tokens": int, "languages": dict,
              "sources": dict}


def _malformed_entries(manifest: dict) -> list[str]:
    if not isinstance(manifest["shards"], list):
        return [f"manifest: shards is a {type(manifest['shards']).__name__}, expected a list of entries"]
    problems = []
    for i, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict):
            problems.append(f"manifest: shards[{i}] is not an object")
            continue
        problems += [f"manifest: shards[{i}]: {key} missing or not a{'n' if kind is int else ''} {kind.__name__}"
                     for key, kind in ENTRY_KEYS.items() if not isinstance(entry.get(key), kind)]
    return problems


def _verify_manifest(manifest: dict, shards_dir: str) -> list[str]:
    """What the manifest says about itself, against itself, the special-token table and the tokenizer
    file it names (when that file is there)."""
    problems, entries = [], manifest["shards"]
    files = [e["file"] for e in entries]
    if len(set(files)) != len(files):
        problems.append(f"manifest: a shard listed more than once ({sorted({f for f in files if files.count(f) > 1})})")
    totals = {key: sum(e[key] for e in entries) for key in ("samples", "tokens", "loss_tokens")}
    if manifest.get("totals") != totals:
        problems.append(f"manifest: totals {manifest.get('totals')}, the shards add up to {totals}")
    for key in ("languages", "sources"):
        names = manifest.get(key, [])
        if len(set(names)) != len(names):
            problems.append(f"manifest: {key} {names} names one twice")
        if unknown := sorted({n for e in entries for n in e[key]} - set(names)):
            problems.append(f"manifest: shards count {key} {unknown} that the {key} list lacks")
        counted = sum(sum(e[key].values()) for e in entries)
        if counted != manifest.get("stream_tokens"):
            problems.append(f"manifest: the shards' {key} count {counted} tokens, stream_tokens says "
                            f"{manifest.get('stream_tokens')}")
    if manifest.get("special_tokens") != {str(i): piece for i, piece in SPECIAL_TOKENS.items()}:
        problems.append(f"manifest: special_tokens {manifest.get('special_tokens')} are not the table of DESIGN.md")
    if (manifest.get("objective") or {}).get("seq_len", manifest["seq_len"]) != manifest["seq_len"]:
        problems.append(f"manifest: objective.seq_len {manifest['objective']['seq_len']} but seq_len "
                        f"{manifest['seq_len']}")
    tokenizer = manifest.get("tokenizer") or {}
    model = storage.join(shards_dir, tokenizer.get("file", ""))
    if "://" not in tokenizer.get("file", "") and tokenizer.get("file") and storage.exists(model) \
            and file_sha256(model) != tokenizer.get("sha256"):
        problems.append(f"manifest: tokenizer sha256 {tokenizer.get('sha256')} is not that of {model} (the shards "
                        "were built with another model, or it was replaced since)")
    return problems


def _verify_shard(dataset: ShardDataset, first: int, entry: dict, progress) -> list[str]:
    vocab, n_langs = dataset.vocab_size, len(dataset.languages)
    found, tokens, loss = [], 0, 0
    for i in range(first, first + entry["samples"]):
        sample = dataset[i]
        tokens += int(np.count_nonzero(sample["segment_ids"]))
        loss += int(np.count_nonzero(sample["targets"] != -100))
        errors = verify_sequence(sample)
        if sample["tokens"].max() >= vocab or sample["targets"].max() >= vocab:  # negative ids: verify_sequence
            errors.append(f"an id >= vocab_size {vocab}")
        if sample["langs"].max() >= n_langs:
            errors.append(f"a langs index >= {n_langs} languages")
        found += [f"{entry['file']} row {i - first}: {e}" for e in errors]
        if progress:
            progress()
    if (tokens, loss) != (entry["tokens"], entry["loss_tokens"]):
        found.append(f"{entry['file']}: {tokens} tokens and {loss} loss tokens, the manifest says "
                     f"{entry['tokens']} and {entry['loss_tokens']}")
    return found


def _verify_arguments(p) -> None:
    p.add_argument("shards_dir", help="a local shards folder (<workdir>/shards)")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 of every file")


@register_command("shards", "verify", "check shard checksums and every blank-infilling invariant", _verify_arguments)
def verify_command(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    try:
        total = sum(e["samples"] for e in read_manifest(args.shards_dir)["shards"])
    except Exception:  # reported below by verify_shards, with its reason
        total = None
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("verifying sequences", total=total)
        problems = verify_shards(args.shards_dir, checksums=not args.no_checksums,
                                 progress=lambda: bar.advance(task))
    for p in problems:
        console.print(f"[red]{p}[/red]")
    if problems:
        console.print(f"[red]{args.shards_dir}: {len(problems)} problem{'s' if len(problems) > 1 else ''}[/red]")
        return 1
    console.print(f"{args.shards_dir}: {total} sequences verified, no problems")
    return 0
