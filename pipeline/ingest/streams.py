"""An uncompressed, streaming view of one input file: plain, gzip or zstd.

Gzip comes in two layouts in real dumps, and both read the same way here: one member per record
(CommonCrawl, so a record can be fetched by offset) and one stream for the whole file. Data comes
through in chunks of `CHUNK` bytes and every decoder call's output is bounded (gzip by zlib's
max_length, zstd by the size of the slice it is fed), so neither a 5 GB file, a highly
compressible 300 MB record nor a zstd bomb (10 GiB of zeros in 327 KB) is ever held in memory.

Damage inside a member (one member for the whole file included) stops the data where the decoder
finds it, keeping what it decoded before: a decoder call that meets the damage raises and returns
nothing, so the call is re-run from a copy of the gzip decoder's state before it in halving slices
(`_decode_before_damage`; only on that error path, one state copy per call otherwise) down to the
byte the damage is found in. zstd decoders cannot be copied: their output is kept up to the
`ZSTD_FEED` slice the damage is found in (a block ending in that slice before it is lost with it:
never seen on text, whose blocks are tens of KB compressed; docs/benchmarks.md, Ingest).
Damage found by a checksum at the end (CHECKSUM_ERRORS) can be anywhere: that call's output is
dropped. Deflate can decode damaged bits to wrong bytes for a while before a code is invalid, so
the bytes just before where the damage is found may be wrong (no checksum can tell which).

Offsets: `pos` counts uncompressed bytes. `source_offset(pos)` gives the offset a user can seek to:
the gzip member's offset in the file when a member starts exactly there (one member per record),
otherwise the uncompressed offset. A file that mixes both layouts (a member holding several records
next to one-record members) would put the two kinds in one number space, so from its first record
that shows the mix on, offsets are uncompressed ones, raised where needed above every offset given
before: unique, while one-layout files keep theirs.
"""
from __future__ import annotations

import functools
import hashlib
import re
import zlib
from collections import deque
from typing import IO

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_STEP = 1 << 16  # compressed bytes read from the file at a time
# zstd's decoder has no output limit, and one block (128 KiB out) can take 4 bytes in: a 64 KiB read
# can expand to 2 GiB. Fed 512 B at a time it yields at most 16 MiB per call (bench/hostile.py: 0.7x
# the line-reading speed of unbounded calls on ordinary text; 256 B: 0.6x, 1 KiB: 0.8x but 32 MiB).
ZSTD_FEED = 512
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# zstd skippable frames (pzstd's frame sizes, seekable zstd's seek table): magic 0x184D2A50..5F
# little-endian, a 4-byte little-endian size, then that many bytes to skip
ZSTD_SKIPPABLE = re.compile(rb"[\x50-\x5f]\x2a\x4d\x18")
# Damage a decoder finds only at the end of a member or frame, checking what it decoded (gzip's CRC and
# length, zstd's checksum): it can be anywhere in the member, so the output of the decoder call that
# meets it is not kept either.
CHECKSUM_ERRORS = ("incorrect data check", "incorrect length check", "doesn't match checksum")
LOOKAHEAD = 4096  # bytes a record-header pattern may look at
NEWLINES = re.compile(rb"[\r\n]*")


@functools.cache
def _after_newline(pattern: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """A newline that a line `pattern` matches at the start of follows."""
    return re.compile(rb"\n(?=" + pattern.pattern + rb")", pattern.flags)


def sniff_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC) or ZSTD_SKIPPABLE.match(head):
        return "zstd"
    return "plain"


def expected_compression(path: str) -> str | None:
    """What the file name promises (None: no promise, sniff the bytes)."""
    name = path.lower()
    if name.endswith((".gz", ".gzip")):
        return "gzip"
    if name.endswith(".zst"):
        return "zstd"
    return None


def _found_by_checksum(error: Exception) -> bool:
    return any(message in str(error) for message in CHECKSUM_ERRORS)


def _decode_before_damage(decoder, data: bytes) -> tuple[bytes, int]:
    """`data`, on which a decoder call from the zlib state `decoder` raised, re-decoded from that state
    in slices that halve at each failure (about 2 log2(len) calls over 2 len bytes): (the output of
    the bytes before the one the damage is found in, how many bytes those are). The output is at most
    the failed call's bound, which it did not reach before the damage."""
    view, parts, pos, step = memoryview(data), [], 0, len(data) // 2  # all of it is known to fail
    while step and pos < len(data):
        trial = decoder.copy()
        try:
            parts.append(trial.decompress(view[pos:pos + step]))
        except zlib.error:
            step //= 2
            continue
        decoder, pos = trial, pos + step
    return b"".join(parts), pos


class Decompressed:
    """Read/readline over the uncompressed bytes of `raw`, counting the uncompressed position.

    When the data runs out, `truncated` says the input ended inside a gzip member or zstd frame;
    if that member or frame gave no output, `undecoded_bytes` counts its compressed bytes (they are
    in no record, so the reader's error carries them).
    Compressed bytes that do not decode (a damaged member, bytes between members that are not a
    member) stop the data like an end of file, with `corrupt` saying why and `undecoded_bytes`
    counting the compressed bytes up to the next member header found; the reader reports them,
    then `resume()` goes on with that next member, so the records after the damage are read.
    Every stop is an error for the reader to report."""

    def __init__(self, raw: IO[bytes], compression: str):
        self.raw = raw
        self.compression = compression
        self.pos = 0
        self.truncated = False
        self.corrupt: str | None = None
        self.corrupt_offset = 0  # file offset of the undecodable bytes
        self.undecoded_bytes = 0
        self._buf = bytearray()
        self._off = 0  # read position inside _buf
        self._done = False
        self._raw_pos = 0  # compressed bytes taken from raw
        self._pending = b""  # compressed bytes not yet given to the decoder
        self._member = None  # zlib decoder of the current gzip member
        self._member_fed = False  # whether it was given input (else a fresh one is its state before)
        self._damage: Exception | None = None  # what _decode met, after the output before it
        self._member_starts: deque[tuple[int, int]] = deque()  # (uncompressed, compressed) offsets
        self._member_at = (0, 0)  # the current member's start; source_offset() may have dropped it from the deque
        self._produced = 0
        self._layouts: set[bool] = set()  # source_offset: records seen at a member start (True), inside one (False)
        self._top = -1  # the largest source offset given
        self._resumable = False
        self._magic = ZSTD_MAGIC if compression == "zstd" else GZIP_MAGIC

    # -- producing uncompressed bytes
    def _read_raw(self) -> bytes:
        # zstd cannot bound its output, so it gets small inputs
        data = self.raw.read(CHUNK if self.compression != "zstd" else ZSTD_STEP)
        self._raw_pos += len(data)
        return data

    def _emit(self, data: bytes) -> None:
        self._buf += data
        self._produced += len(data)

    def _produce(self) -> None:
        """Append at least one byte to the buffer, or set _done."""
        if self.compression == "plain":
            data = self._read_raw()
            self._emit(data) if data else self._finish()
        else:
            self._produce_members()

    def _new_member(self):
        if self.compression == "gzip":
            return zlib.decompressobj(31)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def _decode(self, data: bytes) -> tuple[bytes, bytes]:
        """(output of at most about CHUNK bytes, input the current member did not consume). On
        damaged data: the output decoded before the damage and the input from where it was found,
        with the error in `_damage`."""
        member = self._member
        if self.compression == "gzip":
            before = member.copy() if self._member_fed else None
            self._member_fed = True
            try:
                out = member.decompress(data, CHUNK)
            except zlib.error as e:
                self._damage = e
                if _found_by_checksum(e):
                    return b"", data
                out, used = _decode_before_damage(self._new_member() if before is None else before, data)
                return out, data[used:]
            return out, (member.unused_data if member.eof else member.unconsumed_tail)
        from zstandard import ZstdError

        view, pos, parts, produced = memoryview(data), 0, [], 0
        while pos < len(data) and produced < CHUNK and not member.eof:
            try:
                part = member.decompress(view[pos:pos + ZSTD_FEED])
            except ZstdError as e:  # the slices before it are kept
                self._damage = e
                if _found_by_checksum(e):
                    parts, pos = [], 0
                break
            pos += ZSTD_FEED
            parts.append(part)
            produced += len(part)
        rest = data[pos:]
        out = parts[0] if len(parts) == 1 else b"".join(parts)  # a bomb's one big part is not copied
        return out, (member.unused_data + rest if member.eof else rest)

    def _produce_members(self) -> None:
        """Gzip members / zstd frames one after another, each decoded with bounded output."""
        magic = self._magic
        while True:
            if self._member is None:
                if len(self._pending) < len(magic):
                    self._pending += self._read_raw()
                if not self._pending:
                    return self._finish()
                if self.compression == "zstd" and ZSTD_SKIPPABLE.match(self._pending):
                    if not self._skip_skippable_frame():
                        return self._finish()
                    continue
                if not self._pending.startswith(magic):
                    bad_start = self._raw_pos - len(self._pending)
                    self.corrupt = f"bytes at file offset {bad_start} are not a {self.compression} member"
                    return self._skip_to_next_member(bad_start, bad_start + 1)
                self._member, self._member_fed = self._new_member(), False
                self._member_at = (self._produced, self._raw_pos - len(self._pending))
                self._member_starts.append(self._member_at)
            if not self._pending:
                self._pending = self._read_raw()
                if not self._pending:
                    produced_at, member_start = self._member_at
                    return self._truncate(self._raw_pos - member_start if produced_at == self._produced else 0)
            out, self._pending = self._decode(self._pending)
            if self._damage is not None:
                return self._stop_at_damage(out)
            if self._member.eof:
                self._member = None
            if out:
                return self._emit(out)

    def _stop_at_damage(self, out: bytes) -> None:
        """Emit the output decoded before the damage `_decode` met, then stop the data there."""
        error, self._damage = self._damage, None
        produced_at, member_start = self._member_at
        self._emit(out)
        # undecoded: from where the damage was found, or the whole member if nothing came out of it
        # (then the next member may start at the same place)
        failed_at = self._raw_pos - len(self._pending)
        if produced_at == self._produced:
            self._member_starts.pop()
            failed_at = member_start
        self.corrupt = f"invalid {self.compression} data in the member at file offset {member_start}: {error}"
        self._skip_to_next_member(failed_at, failed_at + 1)

    def _skip_skippable_frame(self) -> bool:
        """Drop the skippable frame `_pending` starts with; False (truncated) when the data ends inside it."""
        frame_start = self._raw_pos - len(self._pending)
        while len(self._pending) < 8:
            more = self._read_raw()
            if not more:
                self._truncate(self._raw_pos - frame_start)
                return False
            self._pending += more
        skip = 8 + int.from_bytes(self._pending[4:8], "little")
        while len(self._pending) < skip:
            skip -= len(self._pending)
            self._pending = self._read_raw()
            if not self._pending:
                self._truncate(self._raw_pos - frame_start)
                return False
        self._pending = self._pending[skip:]
        return True

    def _truncate(self, undecoded: int) -> None:
        self.truncated, self.undecoded_bytes = True, undecoded
        self._finish()

    def _skip_to_next_member(self, bad_start: int, search_from: int) -> None:
        """Stop the data here; find the next member header at or after `search_from` (compressed
        offset) for `resume()`, counting the bytes from `bad_start` up to it as undecoded."""
        self._member = None
        self.corrupt_offset = bad_start
        buf, base = self._pending, self._raw_pos - len(self._pending)
        header = self._magic + (b"\x08" if self.compression == "gzip" else b"")  # gzip: deflate method
        while True:
            found = buf.find(header, max(search_from - base, 0))
            if found >= 0:
                self._pending = buf[found:]
                self.undecoded_bytes = base + found - bad_start
                self._resumable = True
                return self._finish()
            more = self._read_raw()
            if not more:
                self._pending = b""
                self.undecoded_bytes = base + len(buf) - bad_start
                self._resumable = False
                return self._finish()
            keep = len(header) - 1  # a header split across two reads
            base += len(buf) - keep
            buf = buf[-keep:] + more

    def resume(self) -> bool:
        """After a stop for undecodable bytes: go on with the next member, if there is one."""
        if not self._resumable:
            return False
        self._resumable = False
        self.corrupt, self.undecoded_bytes, self._done = None, 0, False
        return True

    def _finish(self) -> None:
        self._done = True

    def _fill(self, want: int) -> bool:
        """Buffer at least `want` unread bytes if the input has them; False when it does not."""
        while len(self._buf) - self._off < want and not self._done:
            self._produce()
        return len(self._buf) - self._off >= want

    def _take(self, n: int) -> bytes:
        with memoryview(self._buf) as view:  # one copy, not two
            data = bytes(view[self._off:self._off + n])
        self._off += len(data)
        self.pos += len(data)
        if self._off > CHUNK:
            del self._buf[:self._off]
            self._off = 0
        return data

    # -- the file-like interface warcio's record loader uses
    def read(self, n: int | None = None) -> bytes:
        if n is None or n < 0:
            raise ValueError("read() needs a size: inputs are streamed, never read whole")
        self._fill(n)
        return self._take(n)

    def readline(self, limit: int | None = None, newline: bytes = b"\n") -> bytes:
        """One line including its `newline` (one byte), at most `limit` bytes (CHUNK when not given: a
        header line that long is garbage, and the parser's complaint about the rest is cheaper than
        holding it)."""
        return self._take(self.line_length(CHUNK if limit is None or limit < 0 else limit, newline))

    def line_length(self, limit: int, newline: bytes = b"\n") -> int:
        """The bytes of the next line with its `newline`, at most `limit`; buffers them, takes none."""
        start = self._off
        while True:
            end = self._buf.find(newline, start)
            if end >= 0:
                return min(end + 1 - self._off, limit)
            available = len(self._buf) - self._off
            if available >= limit:
                return limit
            start = len(self._buf)
            if not self._fill(available + 1):
                return len(self._buf) - self._off

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.raw.close()

    # -- helpers for readers
    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[self._off:self._off + n])

    def digest_ahead(self, algo: str, n: int) -> bytes | None:
        """hashlib's `algo` digest of the next `n` bytes, without taking them; None when the data ends
        before them. One call over the buffer (a reader that checks a record's digest buffers it anyway)."""
        if not self._fill(n):
            return None
        with memoryview(self._buf) as view:
            return hashlib.new(algo, view[self._off:self._off + n]).digest()

    def at_end(self) -> bool:
        return not self._fill(1)

    def skip_line_rest(self, newline: bytes = b"\n") -> int:
        """Discard up to and including the next `newline` (a line of any length)."""
        skipped = 0
        while True:
            line = self.readline(CHUNK, newline)
            skipped += len(line)
            if not line or line.endswith(newline):
                return skipped

    def line_ending(self, limit: int) -> bytes:
        """b"\\r" when the next `limit` bytes hold a carriage return and no b"\\n" (lines ending in a
        lone CR, as classic Mac OS wrote them), else b"\\n". Buffers up to `limit` bytes ahead, as a
        line that long does."""
        searched = self._off
        while self._buf.find(b"\n", searched, self._off + limit) < 0:
            searched = len(self._buf)
            if searched - self._off >= limit or not self._fill(searched - self._off + 1):
                return b"\r" if self._buf.find(b"\r", self._off, self._off + limit) >= 0 else b"\n"
        return b"\n"

    def skip_matching(self, pattern: re.Pattern[bytes], limit: int) -> int:
        """Discard what `pattern` (which may match nothing) matches at the read position in the bytes
        buffered, at most `limit` of them; how many. One regex call for a run that a loop in Python
        took a step per byte or line for (1 MB of CRs between WARC records: 1.4 s)."""
        if not self._fill(1):
            return 0
        end = pattern.match(self._buf, self._off, min(len(self._buf), self._off + limit)).end()
        return len(self._take(end - self._off))

    def skip_newlines(self) -> int:
        skipped = 0
        while taken := self.skip_matching(NEWLINES, CHUNK):
            skipped += taken
        return skipped

    def skip_to_line_matching(self, pattern: re.Pattern[bytes]) -> int:
        """Discard bytes until a line that `pattern` matches at its start (left unread) or the end.
        The line starts are searched for in the buffer by one regex call, not visited one by one."""
        line_start = _after_newline(pattern)
        skipped = 0
        while not self.at_end():
            self._fill(LOOKAHEAD)
            buf, off = self._buf, self._off
            if pattern.match(buf, off):
                return skipped
            # only line starts with LOOKAHEAD bytes after them buffered (or the data's end), as `pattern`
            # was matched against when each line was visited
            searchable = len(buf) if self._done else len(buf) - LOOKAHEAD
            found = line_start.search(buf, off)
            if found and found.start() < searchable:
                return skipped + len(self._take(found.start() + 1 - off))
            last = buf.rfind(b"\n", off, searchable)
            skipped += len(self._take(last + 1 - off)) if last >= 0 else self.skip_line_rest()
        return skipped

    def overrun(self, length: int, first_line: re.Pattern[bytes], after_blank: re.Pattern[bytes]) -> int | None:
        """For a record whose content is said to be the next `length` bytes: when these are not
        followed by newlines and a line `first_line` matches (or the end of the data), but another
        record starts inside them (where `after_blank` ends, or at a gzip member start that
        `first_line` matches), how many bytes come before that record; else None. Buffers `length`
        bytes ahead, so callers bound it."""
        self._fill(length + LOOKAHEAD)
        buf, start = self._buf, self._off
        end = start + length
        if end <= len(buf):
            after = NEWLINES.match(buf, end).end()
            if after == len(buf) or first_line.match(buf, after):
                return None
        found = after_blank.search(buf, start + 1, end + LOOKAHEAD)  # its first line may go on past `end`
        inside = found.end() - start if found and found.end() < end else None
        for produced_at, _ in self._member_starts:
            at = produced_at - self.pos
            if 0 < at < (inside or length) and first_line.match(buf, start + at):
                return at
        return inside

    def source_offset(self, pos: int) -> int:
        """The seekable offset of uncompressed position `pos` (see module docstring); forgets
        member starts before `pos`, so call it with increasing positions."""
        while self._member_starts and self._member_starts[0][0] < pos:
            self._member_starts.popleft()
        member = bool(self._member_starts) and self._member_starts[0][0] == pos
        offset = self._member_starts[0][1] if member else pos
        if offset != pos or (not member and self.compression != "plain"):
            self._layouts.add(member)  # (offset 0 of the first member says nothing: it is both)
        if len(self._layouts) == 2:  # both layouts seen
            offset = max(pos, self._top + 1)
        self._top = max(self._top, offset)
        return offset
