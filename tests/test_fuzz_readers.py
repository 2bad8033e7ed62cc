"""Property-based fuzzing of every ingest reader (issue 15) on the real files of ../shared/data:
random truncations, byte flips and splices (a slice of another real file inserted), on the
compressed file as shipped and on its uncompressed bytes. Whatever the damage:

- reading never raises, and every event is sane (bytes >= 0, a record-level error has an offset);
- routed through the stage's EventRouter (the unit boundary, writing real Parquet), the unit's
  counts balance (in = kept + dropped + errors), and for an uncompressed file the bytes in are
  exactly the file's size.

Reader-level, no engine: the examples are derandomized and few, so the suite is fast and repeatable.
"""
from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest import read_file
from pipeline.ingest.events import Broken
from pipeline.ingest.jsonl import PRESETS, FieldMap
from pipeline.stage import StageStats, UnitWriter
from pipeline.stages.ingest import EventRouter, SourceSection

MAX_RECORD_BYTES = 1 << 20
EXAMPLES = 30  # per reader; derandomized, so every run tries the same inputs

MUTATION = st.tuples(st.sampled_from(["truncate", "flip", "splice"]), st.floats(0, 1), st.floats(0, 1),
                     st.integers(1, 4096), st.integers(1, 255))
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=4)
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mutate(data: bytes, donors: list[bytes], mutations) -> bytes:
    out = bytearray(data)
    for kind, where, which, size, xor in mutations:
        pos = int(where * len(out))
        if kind == "truncate":
            del out[max(pos, 1):]
        elif kind == "flip" and out:
            for i in range(pos, min(pos + size % 16 + 1, len(out))):
                out[i] ^= xor
        else:
            donor = donors[int(which * (len(donors) - 1))]
            start = int(which * max(len(donor) - size, 0))
            out[pos:pos] = donor[start:start + size]
    return bytes(out)


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory) -> dict[str, tuple[bytes, str, FieldMap]]:
    """name -> (bytes, file suffix, fields): the real files each reader reads, as shipped and unpacked."""
    crawl, jsonl = shared_data / "crawl", shared_data / "jsonl"
    warc = (crawl / "warc/cc-main-2020-34-sample.warc.gz").read_bytes()
    wet = (crawl / "wet/cc-main-2016-50-filter_test_1.wet.gz").read_bytes()
    lines = (jsonl / "chinesewebtext-cc-2021-43-zh.jsonl").read_bytes().splitlines(keepends=True)[:20]
    docs = [json.loads(line) for line in lines]
    folder = tmp_path_factory.mktemp("parquet")
    pq.write_table(pa.Table.from_pylist(docs), folder / "t.parquet", row_group_size=5)
    ccnet = PRESETS["ccnet"]
    return {
        "warc.gz": (warc, ".warc.gz", FieldMap()),
        "warc": (gzip.decompress(warc), ".warc", FieldMap()),
        "wet.gz": (wet, ".wet.gz", FieldMap()),
        "wet": (gzip.decompress(wet)[:200_000], ".wet", FieldMap()),
        "arc": (_arc_from_warc(gzip.decompress(warc)), ".arc", FieldMap()),
        "jsonl": (b"".join(lines), ".jsonl", ccnet),
        "jsonl.gz": ((jsonl / "cc_en_head-0091.jsonl.gz").read_bytes(), ".jsonl.gz", PRESETS["dolma"]),
        "json": (b"[" + b",\n".join(line.rstrip(b"\n") for line in lines) + b"]", ".json", ccnet),
        "parquet": ((folder / "t.parquet").read_bytes(), ".parquet", ccnet),
    }


def _arc_from_warc(warc: bytes) -> bytes:
    """ARC v1 records holding the HTTP responses of a real WARC (no real ARC file is in shared/data)."""
    from io import BytesIO

    from warcio.archiveiterator import ArchiveIterator

    records = []
    for r in itertools.islice(ArchiveIterator(BytesIO(warc)), 60):
        if r.rec_type == "response":
            block = r.raw_stream.read()
            url = r.rec_headers.get_header("WARC-Target-URI")
            records.append(f"{url} 0.0.0.0 20200801000000 text/html {len(block)}\n".encode() + block + b"\n")
    return b"".join(records)


def check(path: Path, data: bytes, suffix: str, fields: FieldMap, out_dir: Path) -> None:
    events = list(read_file(str(path), "auto", fields, MAX_RECORD_BYTES))
    for e in events:
        assert e.nbytes >= 0 and getattr(e, "docs", 1) >= 0
        if isinstance(e, Broken):
            assert e.reason and e.message
            assert e.docs == 0 or e.offset is not None or e.reason in ("unreadable_file", "reader_failed"), e
    out = UnitWriter(str(out_dir), "ingest", 0)
    router = EventRouter(out, SourceSection(name="fuzz", paths=[str(path)]), str(path))
    for e in events:
        router.route(e)
    router.flush()
    stats = StageStats.from_dict(out.close())
    stats.check_conservation(f"fuzzed {path.name}")
    if not suffix.endswith((".gz", ".parquet")):
        assert stats.input.bytes == len(data)


def fuzz_case(name: str):
    @FUZZ
    @given(mutations=MUTATIONS)
    def test(real, tmp_path, mutations):
        data, suffix, fields = real[name]
        damaged = mutate(data, [d for d, _, _ in real.values()], mutations)
        path = tmp_path / f"fuzzed{suffix}"
        path.write_bytes(damaged)
        out_dir = tmp_path / "unit"
        check(path, damaged, suffix, fields, out_dir)

    test.__name__ = f"test_fuzzed_{name.replace('.', '_')}_never_raises_and_balances"
    return test


for _name in ("warc.gz", "warc", "wet.gz", "wet", "arc", "jsonl", "jsonl.gz", "json", "parquet"):
    _test = fuzz_case(_name)
    globals()[_test.__name__] = _test
