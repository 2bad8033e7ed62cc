"""Paths that may be local, gs://, s3:// or hdfs://, through pyarrow's filesystems.

Every write is atomic: data goes to a temporary name beside the target and is renamed into place,
so a killed task or run never leaves a file that looks finished.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import functools
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import uuid
from collections import defaultdict
from typing import IO, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI.

    S3-compatible endpoints (MinIO, moto) are reached with the standard AWS_ENDPOINT_URL variable."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if uri.startswith(("s3://", "s3a://")):
        bucket_path = uri.split("://", 1)[1]
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        kwargs = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs = {"endpoint_override": host, "scheme": scheme}
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            kwargs["region"] = region
        return _s3(os.getpid(), tuple(os.environ.get(v) for v in _S3_CREDENTIALS), **kwargs), bucket_path
    return pafs.FileSystem.from_uri(uri)


_S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@functools.lru_cache(maxsize=8)
def _s3(pid: int, credentials: tuple, **kwargs) -> pafs.S3FileSystem:
    """One S3 filesystem per process, credentials and settings: making one takes ~80 ms (the AWS SDK's
    client and credential chain), which every storage call on s3:// paid. `pid` keeps a forked child
    (a DataLoader worker) from sharing its parent's connections; `credentials`, the variables the SDK
    reads them from when the filesystem is made, so a change of them is seen."""
    return pafs.S3FileSystem(**kwargs)


def join(base: str, *parts: str) -> str:
    if "://" in base:
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def _rejoin(uri_like: str, path: str) -> str:
    """Turn a filesystem-internal path back into a URI of the same scheme as `uri_like`."""
    if "://" not in uri_like:
        return path
    scheme = uri_like.split("://", 1)[0]
    return f"{scheme}://{path}"


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def size(uri: str) -> int:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).size or 0


def file_info(uri: str) -> pafs.FileInfo:
    fs, path = filesystem(uri)
    return fs.get_file_info(path)


class InputLoopError(ValueError):
    """Expanding an input path met a directory symlink that leads back into its own folder."""


def _local_files(root: str, hidden_ok: bool = False, loops: list[InputLoopError] | None = None) -> list[str]:
    """Every file below local folder `root`, sorted. Directory symlinks are followed, each real
    folder once; each real file is listed once (under its first name in sorted order). A symlink
    back to a folder it sits in (following it would never end) is not followed: it is appended to
    `loops`, or raised as InputLoopError when `loops` is None."""
    files, seen_dirs, seen_files = [], set(), set()
    stack: list[tuple[str, tuple]] = [(root, ())]
    while stack:
        folder, ancestors = stack.pop()
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            loop = InputLoopError(f"{folder} is a symlink to {os.path.realpath(folder)}, a folder it is inside of: "
                                  f"not followed (it would list the same files forever)")
            loop.link = folder
            if loops is None:
                raise loop
            loops.append(loop)
            continue
        if key in seen_dirs:  # a second way to the same folder: its files are listed once
            continue
        seen_dirs.add(key)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in reversed(entries):  # the stack pops them in sorted order
            if entry.is_dir():
                stack.append((entry.path, ancestors + (key,)))
        for entry in entries:
            if entry.is_file() and (hidden_ok or not entry.name.startswith((".", "_"))):
                fst = entry.stat()
                if (fst.st_dev, fst.st_ino) not in seen_files:
                    seen_files.add((fst.st_dev, fst.st_ino))
                    files.append(entry.path)
    return sorted(files)


def _files_below(fs: pafs.FileSystem, path: str, loops: list[InputLoopError] | None) -> list[str]:
    if isinstance(fs, pafs.LocalFileSystem):
        return _local_files(path, hidden_ok=True, loops=loops)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return [i.path for i in infos if i.type == pafs.FileType.File]


def expand(pattern: str, loops: list[InputLoopError] | None = None) -> list[str]:
    """Files matching a path, a directory (all files below it) or a glob, sorted; local ones absolute and
    normalised (`..` resolved, links kept) whichever way the pattern names them.

    A pattern that matches nothing returns [] (the caller records that as an error, the run goes on).
    Local directory symlinks are followed once per real folder and each real file is listed once;
    a symlink loop is skipped and appended to `loops`, or raised when `loops` is None."""
    fs, path = filesystem(pattern)
    if not any(c in path for c in "*?["):
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [pattern if "://" in pattern else path]  # path: os.path.abspath(pattern)
        if info.type == pafs.FileType.Directory:
            return sorted(_rejoin(pattern, p) for p in _files_below(fs, path, loops)
                          if not posixpath.basename(p).startswith((".", "_")))
        return []
    # Walk from the longest prefix without wildcards.
    parts = path.split("/")
    fixed = []
    for p in parts:
        if any(c in p for c in "*?["):
            break
        fixed.append(p)
    root = "/".join(fixed) or "/"
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    matched = [p for p in _files_below(fs, root, loops) if fnmatch.fnmatchcase(p, path)]
    return sorted(_rejoin(pattern, p) for p in matched)


def open_input(uri: str) -> IO[bytes]:
    """A seekable binary stream (no decompression: the readers decide how to decode)."""
    fs, path = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return open(path, "rb")
    return fs.open_input_file(path)


def read_bytes(uri: str) -> bytes:
    with open_input(uri) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)


def rmtree(uri: str) -> None:
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def rename(src: str, dst: str) -> None:
    fs, s = filesystem(src)
    _, d = filesystem(dst)
    if isinstance(fs, pafs.S3FileSystem):  # a move there is a copy and a delete
        _copy_file(fs, s, d)
        fs.delete_file(s)
    else:
        fs.move(s, d)


# S3 copies at most 5 GiB in one request (CopyObject), the only copy pyarrow's S3 filesystem sends; a
# part file written from one large input (a 15 GB JSON lines dump is one unit) can be larger.
S3_COPY_LIMIT = 5 << 30
STREAM_COPY_BYTES = 64 << 20


def _copy_file(fs: pafs.FileSystem, src: str, dst: str, nbytes: int | None = None) -> None:
    """Copy one file (`nbytes` long, when the caller knows) on the store's side; on S3 a file over
    S3_COPY_LIMIT streams through this process (read in STREAM_COPY_BYTES pieces, written as a multipart
    upload) instead of failing."""
    s3 = isinstance(fs, pafs.S3FileSystem)
    if s3 and (fs.get_file_info(src).size if nbytes is None else nbytes) > S3_COPY_LIMIT:
        with fs.open_input_stream(src) as reader, fs.open_output_stream(dst) as writer:
            shutil.copyfileobj(reader, writer, STREAM_COPY_BYTES)
    else:
        fs.copy_file(src, dst)


def renames_folders(uri: str) -> bool:
    """Whether `uri`'s filesystem renames a folder in one step (local disks, file:// URIs of them, HDFS);
    object stores (s3://, gs://, abfs:// without a hierarchical namespace) have no folders, so a rename
    copies every file."""
    return "://" not in uri or uri.startswith(("file://", "hdfs://"))


def tree(uri: str) -> tuple[list[str], list[tuple[str, int]]]:
    """The folders and the files (with their sizes) below folder `uri`, as paths relative to it, sorted."""
    fs, root = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    folders = sorted(posixpath.relpath(i.path, root) for i in infos if i.type == pafs.FileType.Directory)
    files = sorted((posixpath.relpath(i.path, root), i.size) for i in infos if i.type == pafs.FileType.File)
    return folders, files


# Object stores copy on their side: each copy is a request that waits on the store, not on this machine.
COPY_THREADS = 16


def copy_files(src: str, dst: str, files: list[tuple[str, str, int]]) -> None:
    """Copy `files` ((path below folder `src`, path below folder `dst`, size)) on one filesystem,
    COPY_THREADS at a time; raises the first failed copy's error."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    with concurrent.futures.ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(lambda file: _copy_file(fs, posixpath.join(src_path, file[0]),
                                              posixpath.join(dst_path, file[1]), file[2]), files))


def listdir(uri: str) -> list[str]:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(path)))


TEMPORARY_MARK = ".inprogress-"


def _temporary_name(uri: str) -> str:
    head, tail = (uri.rsplit("/", 1) if "/" in uri else ("", uri))
    name = f".{tail}{TEMPORARY_MARK}{uuid.uuid4().hex[:12]}"
    return f"{head}/{name}" if head else name


def is_temporary(path: str) -> bool:
    """Whether `path` names a file being written (or left by a write that failed): _temporary_name's."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith(".") and TEMPORARY_MARK in name


@contextlib.contextmanager
def atomic_output(uri: str, in_place: bool = False) -> Iterator[IO[bytes]]:
    """Write a file under a temporary name; rename it into place only if the block succeeds. `in_place`:
    written at `uri` itself, for a file that no one reads before the block ends (an object store's object
    appears when its upload completes; a rename there would copy it); deleted if the block fails."""
    fs, _ = filesystem(uri)
    makedirs(uri.rsplit("/", 1)[0] if "/" in uri else ".")
    tmp = uri if in_place else _temporary_name(uri)
    _, tmp_path = filesystem(tmp)
    stream = fs.open_output_stream(tmp_path)
    try:
        yield stream
        stream.close()
        if not in_place:
            rename(tmp, uri)
    except BaseException:
        with contextlib.suppress(Exception):
            stream.close()
        with contextlib.suppress(Exception):
            fs.delete_file(tmp_path)
        raise


def write_bytes(uri: str, data: bytes, in_place: bool = False) -> None:
    """`data` as file `uri` (`atomic_output`)."""
    with atomic_output(uri, in_place) as f:
        f.write(data)


def write_text(uri: str, text: str, in_place: bool = False) -> None:
    write_bytes(uri, text.encode("utf-8"), in_place)


def local_copy(uri: str) -> str:
    """A local path for a file that libraries can only open locally (fastText models): a remote file is
    copied once into a cache folder (GLMDATA_CACHE, default the system temp dir) shared by every task
    of the worker; the copy is keyed by URI and size, so a replaced model is fetched again."""
    if "://" not in uri:
        return uri
    return _cached_copy(uri, size(uri))


@functools.lru_cache(maxsize=8)
def _cached_copy(uri: str, nbytes: int) -> str:
    cache = os.path.join(os.environ.get("GLMDATA_CACHE", tempfile.gettempdir()), "glmdata-models")
    digest = hashlib.sha1(f"{uri}:{nbytes}".encode()).hexdigest()[:16]
    path = os.path.join(cache, f"{digest}-{posixpath.basename(uri)}")
    if not os.path.isfile(path) or os.path.getsize(path) != nbytes:
        write_bytes(path, read_bytes(uri))  # atomic: concurrent tasks never see half a file
    return path


# A column chunk whose dictionary outgrows this falls back to plain encoding (pyarrow's default: 1 MB). A
# 32k-piece vocabulary's token ids (<= 128 KB of them per row group) stay dictionary-encoded; a 128k-piece
# one's stop paying for it: the fallback writes them 12% cheaper and 7% smaller (docs/benchmarks.md,
# encode section). Text columns fall back at either limit.
DICTIONARY_PAGE_LIMIT = 256 << 10


def flat_columns(schema: pa.Schema) -> list[str]:
    """The columns that are not lists, structs or maps. Readers prune row groups by the min/max of such
    columns (dedup's index: bucket, key, node); a list's element min/max (encode's tokens) serve no reader
    and cost ~4% of that column's write (docs/benchmarks.md, encode section)."""
    return [f.name for f in schema if not pa.types.is_nested(f.type)]


def compression(schema: pa.Schema, uncompressed: tuple[str, ...] = ()) -> str | dict[str, str]:
    """ParquetWriter's compression: zstd, or per leaf column ("tokens.list.element"), the columns named in
    `uncompressed` left without. A mapping must name every leaf: one it does not name is not compressed."""
    if not uncompressed:
        return "zstd"
    empty = io.BytesIO()
    pq.write_table(schema.empty_table(), empty)  # the Parquet schema: the leaves' paths
    leaves = pq.read_metadata(pa.BufferReader(empty.getvalue())).schema
    paths = [leaves.column(i).path for i in range(len(leaves))]
    return {path: "none" if any(path == name or path.startswith(name + ".") for name in uncompressed) else "zstd"
            for path in paths}


class ParquetSink:
    """Streams record batches into one zstd Parquet file, created on the first write, renamed on close;
    min/max statistics for its flat columns only, dictionaries up to DICTIONARY_PAGE_LIMIT.
    `keep_temporary_name`: close() leaves the file under its temporary name (`written`), for a commit
    that copies it to `uri` later: on an object store a rename is itself a copy, so renaming it here
    too would copy every byte twice.
    `in_place`: written at `uri` itself, neither temporary name nor rename, for a name no other attempt
    writes and that readers learn from this writer (an object store's object appears whole when its
    upload completes; but close(), which abort() calls too, completes it, with the rows written so far).
    `uncompressed`: columns written without zstd, whose encoding compresses them already."""

    def __init__(self, uri: str, schema: pa.Schema | None = None, keep_temporary_name: bool = False,
                 in_place: bool = False, uncompressed: tuple[str, ...] = ()):
        self.uri = uri
        self.schema = schema
        self.keep_temporary_name = keep_temporary_name
        self.in_place = in_place
        self.uncompressed = uncompressed
        self._writer: pq.ParquetWriter | None = None
        self._tmp: str | None = None
        self.written: str | None = None  # the finished file's name, once closed
        self.rows = 0

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        if data.num_rows == 0:
            return
        if self._writer is None:
            self.schema = self.schema or data.schema
            makedirs(self.uri.rsplit("/", 1)[0])
            self._tmp = self.uri if self.in_place else _temporary_name(self.uri)
            fs, tmp_path = filesystem(self._tmp)
            self._writer = pq.ParquetWriter(tmp_path, self.schema, filesystem=fs,
                                            compression=compression(self.schema, self.uncompressed),
                                            write_statistics=flat_columns(self.schema),
                                            dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT)
        if data.schema != self.schema:
            data = data.select(self.schema.names).cast(self.schema) if isinstance(data, pa.Table) else \
                pa.Table.from_batches([data]).select(self.schema.names).cast(self.schema)
        if isinstance(data, pa.RecordBatch):
            self._writer.write_batch(data)
        else:
            self._writer.write_table(data)
        self.rows += data.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            if not (self.keep_temporary_name or self.in_place):
                rename(self._tmp, self.uri)
            self.written = self._tmp if self.keep_temporary_name else self.uri
            self._writer = None

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            with contextlib.suppress(Exception):
                rmtree(self._tmp)
            self._writer = None


def part_name(part: int) -> str:
    """The file name of part `part` of a folder of Parquet parts."""
    return f"part-{part:05d}.parquet"


def scratch_sink(folder: str, name: str, schema: pa.Schema) -> ParquetSink:
    """A sink for a file of the stage's scratch that is read only under the name its writer reports
    (`written`, once closed). Where a rename is cheap (local disks, HDFS) it is renamed into place as
    `name`. On an object store, where a rename copies the object, it is written once, in place, under
    a name of its own attempt: `<name's stem>-<12 hex digits>.parquet`, a name no other attempt writes
    and not a hidden one (Spark's reader drops files whose names start with '.' or '_', even named
    ones). A failed attempt's file (the error path's close completes its upload) and a duplicate
    attempt's are thus never read: no reader lists the folder."""
    if renames_folders(folder):
        return ParquetSink(join(folder, name), schema)
    stem = name.removesuffix(".parquet")
    return ParquetSink(join(folder, f"{stem}-{uuid.uuid4().hex[:12]}.parquet"), schema, in_place=True)


# A folder's listing: the files an engine step wrote below it (`write_listing`), one URI a line. Hidden:
# neither a listing of the folder (expand) nor Spark's reader takes it for data.
LISTING = "_files"


def write_listing(root: str, files: list[str]) -> None:
    """Name `files` (below folder `root`: `scratch_sink` files whose names the tasks returned) as the
    step's, for `listed_files`. Written by the driver, its only writer, before any reader starts: on an
    object store in place (a rename would copy it), renamed into place elsewhere. Beam's steps write the
    same lines with its own text sink, which keeps the successful attempts' lines only."""
    write_text(join(root, LISTING), "".join(f"{f}\n" for f in sorted(files)), in_place=not renames_folders(root))


def listed_files(root: str) -> dict[str, list[str]]:
    """The files `root`'s listing names, sorted, by the folder holding them; none where the step wrote
    no listing (it had no rows to write: it did not run)."""
    uri = join(root, LISTING)
    if not exists(uri):
        return {}
    by_folder = defaultdict(list)
    for path in sorted(filter(None, read_text(uri).splitlines())):
        by_folder[path.rsplit("/", 1)[0]].append(path)
    return dict(by_folder)
