"""The GLM blank-infilling shard format: the contract between `glmdata shards` and the trainer.

    <shards>/manifest.json        format name + version, seq_len, vocab size, languages, tokenizer,
                                  special tokens, objective settings, seed, and per shard: file,
                                  samples, tokens, loss_tokens, sha256, language and source mix
    <shards>/shard-NNNNN.arrow    Arrow IPC file, one row per packed sequence

Columns (each a fixed-size list of seq_len, so a column of a record batch is one contiguous
[rows, seq_len] block that numpy views without copying from a memory map):
    tokens        int32  model input
    targets       int32  what position i predicts (-100: no loss); no further shift in the trainer
    position_ids  int32  1-D rotary positions (GLM-130B): Part A 0..n-1, a [MASK] span's Part B
                         tokens take its [MASK]'s position, after [gMASK] positions keep counting
    segment_ids   int32  1, 2, ... per sample packed into the sequence; 0 = padding. Token i sees
                         token j iff same segment and (prefix[j] or j <= i)
    prefix        int8   1 for Part A (bidirectional context), 0 for Part B and padding
    langs         int8   per-token index into manifest["languages"] (the document the token stands
                         for); -1 for padding
    kind          string "MASK" (short spans, several samples per sequence) or "gMASK" (long suffix)

The files are written uncompressed so the trainer maps them read-only and pages in only the rows it
touches. Imports only numpy and pyarrow (and the special-token table, which imports nothing): GPU
machines have no Spark or Beam.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from tokenizer.special_tokens import EOP, EOS, GMASK, MASK, PAD, SMASK, SOP, UNK

FORMAT_NAME = "glm-blank-infilling"
FORMAT_VERSION = 1
SEQ_COLUMNS = ("tokens", "targets", "position_ids", "segment_ids", "prefix", "langs")
COLUMN_DTYPES = {"tokens": np.int32, "targets": np.int32, "position_ids": np.int32,
                 "segment_ids": np.int32, "prefix": np.int8, "langs": np.int8}
KINDS = ("MASK", "gMASK")
NEVER_WRITTEN = (UNK, SMASK)  # ids no sequence holds: documents with them are dropped before packing
IGNORE = -100  # targets value for positions without loss (PyTorch's cross-entropy ignore_index)
MANIFEST = "manifest.json"
ROWS_PER_BATCH = 1024  # record batch size inside a shard file; the reader handles any


class ShardFormatError(ValueError):
    """A shard or manifest that does not follow this format (the message names the file)."""


def shard_schema(seq_len: int) -> pa.Schema:
    fields = [pa.field(name, pa.list_(pa.from_numpy_dtype(COLUMN_DTYPES[name]), seq_len), nullable=False)
              for name in SEQ_COLUMNS]
    fields.append(pa.field("kind", pa.string(), nullable=False))
    return pa.schema(fields, metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})


def shard_file_name(index: int) -> str:
    return f"shard-{index:05d}.arrow"


# ---------------------------------------------------------------------------------------------
# Paths: local, or any URI pyarrow reaches (the pipeline passes its own filesystem for S3 endpoints)


def _resolve(path: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    if filesystem is not None:
        return filesystem, path
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


class _HashingStream:
    """A write-only file object that hashes what passes through it (one pass, no read-back)."""

    def __init__(self, sink):
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.sink.write(view)
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _atomic_write(fs: pafs.FileSystem, path: str, write, rename: bool = True) -> tuple[str, str]:
    """Run `write(stream)` into a temporary file beside `path`, then rename it into place (unless not
    `rename`: it stays under the temporary name, for a caller that copies it into place later).
    Returns the sha256 of the bytes written and the path they are at."""
    parent = posixpath.dirname(path)
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.inprogress-{uuid.uuid4().hex[:12]}")
    try:
        with fs.open_output_stream(tmp) as raw:
            stream = _HashingStream(raw)
            write(stream)
        if rename:
            fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    return stream.sha256.hexdigest(), path if rename else tmp


# ---------------------------------------------------------------------------------------------
# Writing


def write_shard(path: str, columns: dict[str, np.ndarray], kinds: list[str],
                filesystem: pafs.FileSystem | None = None, rename: bool = True) -> dict:
    """Write one shard atomically. `columns[name]` is an [n, seq_len] array for every SEQ_COLUMN
    (cast to the column's dtype), `kinds` the n sequence kinds. Not `rename`: the file stays under a
    temporary name beside `path`, returned as "written", for the caller to copy into place.

    Returns {"file", "samples" (= rows, the sequences the trainer indexes), "tokens" (non-padding
    tokens), "loss_tokens" (targets != -100), "sha256" (of the file's bytes)}."""
    missing = [c for c in SEQ_COLUMNS if c not in columns]
    if missing:
        raise ShardFormatError(f"{path}: missing columns {missing}")
    arrays = {c: np.ascontiguousarray(columns[c], dtype=COLUMN_DTYPES[c]) for c in SEQ_COLUMNS}
    n, seq_len = arrays["tokens"].shape
    for c, a in arrays.items():
        if a.shape != (n, seq_len):
            raise ShardFormatError(f"{path}: column {c} has shape {a.shape}, expected {(n, seq_len)}")
    if len(kinds) != n or any(k not in KINDS for k in kinds):
        raise ShardFormatError(f"{path}: kinds must be {n} values from {KINDS}")
    schema = shard_schema(seq_len)

    def batches():
        for lo in range(0, n, ROWS_PER_BATCH):
            hi = min(n, lo + ROWS_PER_BATCH)
            yield pa.record_batch(
                [pa.FixedSizeListArray.from_arrays(pa.array(arrays[c][lo:hi].reshape(-1)), seq_len)
                 for c in SEQ_COLUMNS] + [pa.array(kinds[lo:hi], pa.string())], schema=schema)

    def write(stream):
        with pa.ipc.new_file(stream, schema) as writer:
            for batch in batches():
                writer.write_batch(batch)

    fs, fs_path = _resolve(path, filesystem)
    sha, written = _atomic_write(fs, fs_path, write, rename)
    return {"file": posixpath.basename(fs_path), "samples": int(n),
            "tokens": int(np.count_nonzero(arrays["segment_ids"])),
            "loss_tokens": int(np.count_nonzero(arrays["targets"] != IGNORE)), "sha256": sha,
            **({} if rename else {"written": posixpath.basename(written)})}


def write_manifest(shards_dir: str, manifest: dict, filesystem: pafs.FileSystem | None = None) -> None:
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}
    data = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    fs, fs_dir = _resolve(shards_dir, filesystem)
    _atomic_write(fs, posixpath.join(fs_dir, MANIFEST), lambda stream: stream.write(data))


def read_manifest(shards_dir: str, filesystem: pafs.FileSystem | None = None) -> dict:
    fs, fs_dir = _resolve(shards_dir, filesystem)
    path = posixpath.join(fs_dir, MANIFEST)
    try:
        with fs.open_input_stream(path) as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        below = posixpath.join(fs_dir, "shards", MANIFEST)  # a workdir given for its shards folder
        hint = (f"; {posixpath.join(shards_dir, 'shards')} holds one" if fs.get_file_info(below).is_file else
                f"; is {shards_dir} the output of `glmdata shards`?")
        raise ShardFormatError(f"{path}: no manifest{hint}") from None
    except ValueError as e:
        raise ShardFormatError(f"{path}: not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT_NAME:
        raise ShardFormatError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardFormatError(f"{path}: format_version {manifest.get('format_version')!r}; this reader "
                               f"reads version {FORMAT_VERSION}")
    for key in ("seq_len", "vocab_size", "languages", "shards"):
        if key not in manifest:
            raise ShardFormatError(f"{path}: missing key {key!r}")
    return manifest


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading


class ShardDataset:
    """Every sequence of a local shards folder, by memory map: random access, zero-copy views.

    Shards are mapped on first use and at most `max_open` stay open (least recently used first
    out), so a corpus of tens of thousands of shards does not exhaust file descriptors; a view
    handed out keeps its mapping alive. `verify=True` checks a file's sha256 against the manifest
    when the file is first opened (one streaming pass over its bytes, not repeated when the file is
    mapped again): a changed or truncated shard stops the reader before any of its rows is used."""

    def __init__(self, shards_dir: str, verify: bool = False, max_open: int = 64):
        self.shards_dir = shards_dir
        self.manifest = read_manifest(shards_dir)
        self.seq_len = int(self.manifest["seq_len"])
        self.vocab_size = int(self.manifest["vocab_size"])
        self.languages = list(self.manifest["languages"])
        self._entries = self.manifest["shards"]
        self._paths = [os.path.join(shards_dir, e["file"]) for e in self._entries]
        for path, entry in zip(self._paths, self._entries):
            if not os.path.isfile(path):
                raise ShardFormatError(f"{path}: missing (listed in the manifest)")
        self._unverified = set(range(len(self._paths))) if verify else set()
        self._starts = np.concatenate([[0], np.cumsum([e["samples"] for e in self._entries])]).astype(np.int64)
        self._max_open = max_open
        self._open: OrderedDict[int, _MappedShard] = OrderedDict()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sequence {i} out of range (dataset has {n})")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._shard(k).row(i - int(self._starts[k]))

    def _shard(self, k: int) -> "_MappedShard":
        shard = self._open.pop(k, None)
        if shard is None:
            if k in self._unverified:
                if file_sha256(self._paths[k]) != self._entries[k]["sha256"]:
                    raise ShardFormatError(f"{self._paths[k]}: sha256 differs from the manifest (file changed or "
                                           f"truncated)")
                self._unverified.discard(k)
            shard = _MappedShard(self._paths[k], self.seq_len, self._entries[k]["samples"])
            if len(self._open) >= self._max_open:
                self._open.popitem(last=False)
        self._open[k] = shard
        return shard


class _MappedShard:
    """One shard file, memory-mapped: numpy views of each record batch's columns."""

    def __init__(self, path: str, seq_len: int, rows: int):
        reader = pa.ipc.open_file(pa.memory_map(path, "r"))
        if not reader.schema.equals(shard_schema(seq_len)):
            raise ShardFormatError(f"{path}: schema {reader.schema} is not the shard schema for seq_len {seq_len}")
        batches = [reader.get_batch(b) for b in range(reader.num_record_batches)]
        for batch in batches:  # the rows below keep only "is it gMASK", so a value outside KINDS is refused here
            kinds = batch.column("kind")
            if (pc.sum(pc.is_in(kinds, value_set=pa.array(KINDS))).as_py() or 0) != len(kinds):  # sum of none: null
                raise ShardFormatError(f"{path}: a kind other than {' or '.join(KINDS)}")
        self.views = [{c: _fixed_size_view(batch.column(c), seq_len) for c in SEQ_COLUMNS} for batch in batches]
        self.is_gmask = [pc.equal(batch.column("kind"), "gMASK").to_numpy(zero_copy_only=False) for batch in batches]
        self.starts = np.concatenate([[0], np.cumsum([batch.num_rows for batch in batches])]).astype(np.int64)
        if self.starts[-1] != rows:
            raise ShardFormatError(f"{path}: {self.starts[-1]} rows, the manifest says {rows}")

    def row(self, r: int) -> dict:
        b = int(np.searchsorted(self.starts, r, side="right")) - 1
        r -= int(self.starts[b])
        sample = {c: v[r] for c, v in self.views[b].items()}
        sample["kind"] = "gMASK" if self.is_gmask[b][r] else "MASK"
        return sample


def _fixed_size_view(column: pa.FixedSizeListArray, seq_len: int) -> np.ndarray:
    """[rows, seq_len] numpy view of a fixed-size-list column (no copy: fails loudly if it would)."""
    values = column.values.slice(column.offset * seq_len, len(column) * seq_len)
    return values.to_numpy(zero_copy_only=True).reshape(len(column), seq_len)


# ---------------------------------------------------------------------------------------------
# Invariants of one sequence (DESIGN.md "GLM blank infilling")


def verify_sequence(sample: dict) -> list[str]:
    """Violations of the blank-infilling invariants in one sequence; [] when it is well formed.

    Checks: shapes and value ranges; padding only at the tail and inert; segments contiguous and
    numbered 1, 2, ...; in each segment Part A first, then Part B (so Part A never sees Part B
    under the attention rule); no loss in Part A and loss on every Part B token; Part B targets are
    the next input token within a piece, ending in <eop> for a [MASK] span; every [MASK] answered by
    exactly one Part B piece at its position; [gMASK] ends Part A and positions keep counting."""
    errors: list[str] = []
    try:
        a = {c: np.asarray(sample[c]) for c in SEQ_COLUMNS}
        kind = sample["kind"]
    except KeyError as e:
        return [f"missing column {e.args[0]}"]
    length = a["tokens"].shape
    if len(length) != 1 or any(v.shape != length for v in a.values()):
        return [f"columns must be 1-D of one length: {({c: v.shape for c, v in a.items()})}"]
    if kind not in KINDS:
        return [f"kind {kind!r} is not one of {KINDS}"]
    tokens, targets, pos, seg, prefix, langs = (a[c].astype(np.int64) for c in SEQ_COLUMNS)
    if np.any(tokens < 0):
        errors.append("a negative token id")
    if np.any(np.isin(tokens, NEVER_WRITTEN)) or np.any(np.isin(targets, NEVER_WRITTEN)):
        errors.append("<unk> or [sMASK] in the sequence (the shards stage drops documents holding them)")
    if np.any((prefix != 0) & (prefix != 1)):
        errors.append("prefix holds values other than 0 and 1")
    if np.any(langs < -1):
        errors.append("langs below -1")
    pad = seg == 0
    n_real = int(np.count_nonzero(~pad))
    if pad[:n_real].any():
        errors.append("padding (segment 0) before the last real token")
    if pad.any():
        p = pad
        if (np.any(tokens[p] != PAD) or np.any(targets[p] != IGNORE) or np.any(prefix[p] != 0)
                or np.any(pos[p] != 0) or np.any(langs[p] != -1)):
            errors.append("padding positions must be <pad>, target -100, prefix 0, position 0, lang -1")
    if np.any(langs[~pad] < 0):
        errors.append("a real token has no language (-1)")
    real_seg = seg[:n_real]
    if n_real == 0:
        return errors + ["sequence has no tokens"]
    bounds = np.flatnonzero(np.diff(real_seg)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n_real]])
    if not np.array_equal(real_seg[starts], np.arange(1, len(starts) + 1)):
        errors.append(f"segments must be contiguous and numbered 1, 2, ...: got {real_seg[starts].tolist()}")
        return errors
    if kind == "gMASK" and len(starts) != 1:
        errors.append(f"a gMASK sequence holds one sample, found {len(starts)} segments")
    for s, e in zip(starts.tolist(), ends.tolist()):
        where = f"segment {real_seg[s]}"
        errors += _verify_sample(kind, tokens[s:e], targets[s:e], pos[s:e], prefix[s:e], where)
    return errors


def _verify_sample(kind: str, tokens, targets, pos, prefix, where: str) -> list[str]:
    n_a = int(np.count_nonzero(prefix))
    if n_a == 0 or not np.all(prefix[:n_a] == 1):
        return [f"{where}: Part A must be a non-empty run at the start of the segment"]
    errors = []
    a_tok, b_tok = tokens[:n_a], tokens[n_a:]
    b_tgt, b_pos = targets[n_a:], pos[n_a:]
    if np.any(targets[:n_a] != IGNORE):
        errors.append(f"{where}: loss on a Part A position")
    if np.any(b_tgt == IGNORE):
        errors.append(f"{where}: a Part B position without loss")
    if np.any(b_tgt < 0):
        errors.append(f"{where}: negative target in Part B")
    if np.any(np.isin(a_tok, (SOP, EOP, PAD))):
        errors.append(f"{where}: <sop>, <eop> or <pad> in Part A")
    if not np.array_equal(pos[:n_a], np.arange(n_a)):
        errors.append(f"{where}: Part A positions are not 0..{n_a - 1}")
    if kind == "gMASK":
        if a_tok[-1] != GMASK or np.count_nonzero(a_tok == GMASK) != 1 or np.any(a_tok == MASK):
            errors.append(f"{where}: Part A of a gMASK sample must end with its only [gMASK]")
        if len(b_tok) == 0 or b_tok[0] != SOP:
            errors.append(f"{where}: Part B of a gMASK sample must start with <sop>")
        if np.any(b_tok[1:] == SOP):
            errors.append(f"{where}: more than one <sop> in a gMASK sample")
        if not np.array_equal(b_pos, np.arange(n_a, n_a + len(b_tok))):
            errors.append(f"{where}: positions after [gMASK] must keep counting from {n_a}")
        if len(b_tok) > 1 and not np.array_equal(b_tgt[:-1], b_tok[1:]):
            errors.append(f"{where}: Part B targets are not the next input tokens")
        if np.any(np.isin(b_tgt, (SOP, EOP, MASK, GMASK, PAD))):
            errors.append(f"{where}: a gMASK target is a structural special token")
        return errors
    # [MASK]: Part B is <sop> span ... pieces, one per [MASK], each at its [MASK]'s position.
    if np.any(a_tok == GMASK):
        errors.append(f"{where}: [gMASK] in a MASK sample")
    mask_pos = np.flatnonzero(a_tok == MASK)
    if np.any(np.diff(mask_pos) == 1):
        errors.append(f"{where}: two [MASK] side by side (spans need a kept token between them)")
    if len(b_tok) == 0:
        if len(mask_pos):
            errors.append(f"{where}: {len(mask_pos)} [MASK] without Part B")
        return errors
    if b_tok[0] != SOP:
        errors.append(f"{where}: Part B must start with <sop>")
        return errors
    piece_starts = np.flatnonzero(b_tok == SOP)
    piece_ends = np.concatenate([piece_starts[1:], [len(b_tok)]])
    if len(piece_starts) != len(mask_pos):
        errors.append(f"{where}: {len(mask_pos)} [MASK] but {len(piece_starts)} Part B pieces")
    used = []
    for ps, pe in zip(piece_starts.tolist(), piece_ends.tolist()):
        span_in, span_tgt = b_tok[ps + 1:pe], b_tgt[ps:pe]
        if pe - ps < 2:
            errors.append(f"{where}: an empty span at Part B offset {ps}")
            continue
        if span_tgt[-1] != EOP or not np.array_equal(span_tgt[:-1], span_in):
            errors.append(f"{where}: Part B piece at offset {ps}: targets are not span + <eop>")
        if np.any(np.isin(span_in, (EOS, MASK, GMASK, SOP, EOP, PAD))):
            errors.append(f"{where}: Part B piece at offset {ps} holds a special token (crosses a document?)")
        if np.any(b_pos[ps:pe] != b_pos[ps]):
            errors.append(f"{where}: Part B piece at offset {ps} does not keep one position")
        used.append(int(b_pos[ps]))
    if sorted(used) != mask_pos.tolist():
        errors.append(f"{where}: Part B positions {sorted(used)} do not match the [MASK] positions {mask_pos.tolist()}")
    return errors
