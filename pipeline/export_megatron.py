"""`glmdata export megatron`: encoded documents -> a Megatron-LM indexed dataset (PREFIX.bin/.idx),
so the same corpus feeds Megatron-LM or NeMo.

    PREFIX.bin   token ids of every document, concatenated, no header; uint16 when the vocabulary
                 is below 65,500, int32 otherwise (Megatron's DType.optimal_dtype)
    PREFIX.idx   little-endian: b"MMIDIDX\\x00\\x00", u64 version 1, u8 dtype code, u64 sequence
                 count, u64 document count (documents + 1), int32 sequence lengths, int64 byte
                 offsets of each sequence in the .bin, int64 document indices (0, then the
                 sequence index where each document ends)

One sequence per document, in encode's order (part by part), with <eos> appended unless
`shards.megatron_append_eos` is false; documents the shards stage drops (empty, special or
out-of-vocabulary ids) are dropped here too. Each encode part is written by an engine task in
parallel; one more engine task then concatenates the parts in order, streaming, so its memory
is one part's lengths, not the corpus.
"""
from __future__ import annotations

import argparse
import json
import logging
import struct
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import RunConfig, RunSection, UsageError
from pipeline.registry import register_command
from pipeline.report import stale_stages
from pipeline.runner import SUCCESS, StageNotReady
from pipeline.stage import upstream_parts
from pipeline.stages.shards import document_verdicts, encode_stats, load_tokenizer
from tokenizer.special_tokens import EOS

log = logging.getLogger(__name__)

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7,
               np.uint16: 8}
COPY_CHUNK = 1 << 24  # bytes per read while concatenating


def token_dtype(vocab_size: int) -> type:
    """Megatron's DType.optimal_dtype: uint16 below 65,500 ids, int32 otherwise."""
    return np.uint16 if vocab_size < 65500 else np.int32


def index_header(dtype: type, sequences: int) -> bytes:
    return (INDEX_HEADER + struct.pack("<Q", INDEX_VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
            + struct.pack("<Q", sequences) + struct.pack("<Q", sequences + 1))


def part_paths(parts_dir: str, index: int) -> tuple[str, str]:
    return (storage.join(parts_dir, f"part-{index:05d}.bin"), storage.join(parts_dir, f"part-{index:05d}.lengths"))


@dataclass
class WritePart:
    """One encode part -> its token bytes and its int32 sequence lengths, under `parts_dir`."""

    parts_dir: str
    vocab_size: int
    append_eos: bool

    def __call__(self, indexed: tuple[int, str]) -> dict:
        index, path = indexed
        dtype = np.dtype(token_dtype(self.vocab_size)).newbyteorder("<")
        bin_path, lengths_path = part_paths(self.parts_dir, index)
        dropped: dict[str, int] = {}
        docs = tokens = 0
        with (storage.open_input(path) as f, storage.atomic_output(bin_path) as bin_out,
              storage.atomic_output(lengths_path) as len_out):
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                column = pf.read_row_group(g, columns=["tokens"]).column("tokens").combine_chunks()
                lengths, valid, reasons = document_verdicts(column, self.vocab_size)
                for reason in np.unique(reasons[~valid]).tolist():
                    dropped[reason] = dropped.get(reason, 0) + int((reasons == reason).sum())
                values = column.flatten().to_numpy(zero_copy_only=False)
                kept = values[np.repeat(valid, lengths)].astype(dtype)
                kept_lengths = lengths[valid]
                if self.append_eos:
                    ends = np.cumsum(kept_lengths)
                    kept = np.insert(kept, ends, EOS).astype(dtype)
                    kept_lengths = kept_lengths + 1
                bin_out.write(kept.tobytes())
                len_out.write(kept_lengths.astype("<i4").tobytes())
                docs += len(kept_lengths)
                tokens += int(kept_lengths.sum())
        return {"docs": docs, "tokens": tokens, "dropped": dropped}


@dataclass
class Concatenate:
    """The parts, in order, into PREFIX.bin and PREFIX.idx (streaming: memory of one part)."""

    parts_dir: str
    prefix: str
    vocab_size: int

    def __call__(self, parts: list[int]) -> dict:
        dtype = token_dtype(self.vocab_size)
        itemsize = np.dtype(dtype).itemsize
        with storage.atomic_output(self.prefix + ".bin") as out:
            for index in parts:
                _copy(part_paths(self.parts_dir, index)[0], out)
        sequences = sum(storage.size(part_paths(self.parts_dir, i)[1]) // 4 for i in parts)
        with storage.atomic_output(self.prefix + ".idx") as out:
            out.write(index_header(dtype, sequences))
            for index in parts:  # sequence lengths
                _copy(part_paths(self.parts_dir, index)[1], out)
            offset = 0
            for index in parts:  # byte offsets of each sequence
                lengths = np.frombuffer(storage.read_bytes(part_paths(self.parts_dir, index)[1]), dtype="<i4")
                ends = offset + np.cumsum(lengths, dtype=np.int64) * itemsize
                out.write((ends - lengths.astype(np.int64) * itemsize).astype("<i8").tobytes())
                offset = int(ends[-1]) if len(ends) else offset
            for lo in range(0, sequences + 1, COPY_CHUNK // 8):  # document indices 0..n
                out.write(np.arange(lo, min(sequences + 1, lo + COPY_CHUNK // 8), dtype="<i8").tobytes())
        return {"sequences": sequences, "bytes": offset}


def _copy(uri: str, out) -> None:
    with storage.open_input(uri) as f:
        while chunk := f.read(COPY_CHUNK):
            out.write(chunk)


def export_megatron(cfg: RunConfig, engine, prefix: str, encode: dict, append_eos: bool = True) -> dict:
    """Write PREFIX.bin/.idx from <workdir>/encode/data on `engine`, read with the tokenizer `encode` (the
    stage's stats.json) recorded; returns a summary."""
    workdir = cfg.run.workdir
    parts = upstream_parts(storage.join(workdir, "encode"))
    if not parts:
        raise StageNotReady(f"{workdir}/encode/data: no encoded parts; run `glmdata encode` first")
    vocab_size = load_tokenizer(cfg, encode)[1].vocab_size
    parts_dir = prefix + ".parts-tmp"
    storage.rmtree(parts_dir)
    try:
        written = engine.map_units("export megatron: parts", WritePart(parts_dir, vocab_size, append_eos),
                                   list(enumerate(parts)))
        dropped: dict[str, int] = {}
        for r in written:
            for reason, n in r["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + n
        if not sum(r["docs"] for r in written):  # Megatron cannot open an empty .bin
            raise NothingToExport(f"{workdir}/encode: no document to export; dropped: {dropped or 'none'}")
        (done,) = engine.map_units("export megatron: concatenate", Concatenate(parts_dir, prefix, vocab_size),
                                   [list(range(len(parts)))])
    finally:
        storage.rmtree(parts_dir)
    return {"prefix": prefix, "dtype": np.dtype(token_dtype(vocab_size)).name, "vocab_size": vocab_size,
            "documents": sum(r["docs"] for r in written), "tokens": sum(r["tokens"] for r in written),
            "bin_bytes": done["bytes"], "dropped": dropped, "append_eos": append_eos}


class NothingToExport(RuntimeError):
    """Every encoded document was dropped (or there were none)."""


def check_encoded(workdir: str) -> None:
    """Refuse a workdir whose encode stage has not finished (its parts may be a crashed run's few);
    warn when a stage upstream of it (the tokenizer, the mix, ...) re-ran after it."""
    if not storage.is_dir(workdir):
        raise UsageError(f"{workdir}: no such workdir")
    encode = storage.join(workdir, "encode")
    if not storage.exists(storage.join(encode, SUCCESS)):
        raise StageNotReady(f"{encode} has not finished (no {SUCCESS}); run `glmdata encode` first")
    upstream = stale_stages(workdir).get("encode")
    if upstream:
        log.warning("%s is stale: it was built from an output of %s that has been replaced since; run "
                    "`glmdata encode` to export the current corpus",
                    encode, upstream)


def _arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", help="run config YAML; reads <run.workdir>/encode and tokenizer")
    source.add_argument("--workdir", help="a pipeline workdir with finished encode and tokenizer stages")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="writes PREFIX.bin and PREFIX.idx (local, gs://, s3://)")
    p.add_argument("--engine", choices=["spark", "beam"],
                   help="engine (default: the one that ran the encode stage, from its stats.json)")
    p.add_argument("--no-eos", action="store_true", help="do not append <eos> to each document")


@register_command("export", "megatron", "encoded documents -> Megatron-LM indexed dataset (.bin/.idx)", _arguments)
def export_megatron_command(args: argparse.Namespace) -> int:
    from pipeline.stages import load_config
    from pipeline.engines import make_engine

    if args.config:
        cfg = load_config(args.config)
        append_eos = cfg.section("shards").megatron_append_eos and not args.no_eos
    else:
        cfg = RunConfig(path=args.workdir, run=RunSection(workdir=args.workdir), sections={}, raw={})
        append_eos = not args.no_eos
    check_encoded(cfg.run.workdir)  # before an engine starts
    encode = encode_stats(cfg.run.workdir)  # read once: the engine that ran it and the tokenizer it used
    engine = make_engine(cfg, args.engine or encode.get("engine") or cfg.run.engine)
    try:
        summary = export_megatron(cfg, engine, args.out, encode, append_eos)
    except NothingToExport as e:
        print(f"glmdata export megatron: error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    print(json.dumps(summary, indent=2))
    return 0
