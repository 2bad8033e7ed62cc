"""Ingestion throughput, MB/s per core: the ingest stage on Spark local mode with ONE core
(`local[1]`) against a bare loop (warcio's ArchiveIterator + the same charset decoding and HTML
extractor, no framework, no output), on the same input in the same run. Target: ratio >= 0.8.

Input: every WARC and WET file of ../shared/data/crawl/{warc,wet} that reads whole, repeated into
files under /tmp until they hold at least --mb MB (compressed, as on disk). The WET files that
ship as one gzip stream are re-gzipped one member per record, CommonCrawl's layout, which both
sides read. MB/s counts compressed input bytes.

The Spark session and its Python worker are started by a warm-up run on one small file before
timing (a cluster amortises both); the timed run writes Parquet like any run. The bare loop runs
before and after the stage and counts as the mean of the two, so load from other work on the
machine that drifts during the run weighs on both sides.

    .venv/bin/python bench/ingest.py [--mb 200] [--files 8]
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from pipeline.ingest import charset  # noqa: E402
from pipeline.ingest.html import html_to_text  # noqa: E402
from pipeline.ingest.warc import payload_kind  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "crawl"
# Files that read whole (the appended-zip WET ends in a truncated member: a bad-input case, not a benchmark).
SKIP = ("appended_zip_fragment_unexpected_eof",)


def per_record_gzip(path: Path) -> bytes:
    """The file as one gzip member per record (CommonCrawl's layout)."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data
    with open(path, "rb") as f:
        try:
            for _ in ArchiveIterator(f):
                pass
            return data  # warcio read it: already one member per record
        except Exception:
            pass
    raw = gzip.decompress(data)
    starts = [i for i in range(len(raw)) if raw.startswith(b"WARC/1.", i) and (i == 0 or raw[i - 1:i] == b"\n")]
    return b"".join(gzip.compress(raw[a:b]) for a, b in zip(starts, starts[1:] + [len(raw)]))


def build_input(out: Path, target_mb: int, n_files: int) -> list[Path]:
    unit = b"".join(per_record_gzip(p) for p in sorted((DATA / "warc").glob("*.warc*")) + sorted((DATA / "wet").glob("*.gz"))
                    if not any(s in p.name for s in SKIP) and p.name.endswith(".gz"))
    per_file = -(-target_mb * 10**6 // n_files // len(unit))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = out / f"bench-{i:02d}.warc.gz"
        with open(path, "wb") as f:
            for _ in range(per_file):
                f.write(unit)
        paths.append(path)
    return paths


def bare_loop(paths: list[Path]) -> tuple[int, int]:
    """(documents, text characters): warcio + the same decoding and extractor, nothing else."""
    docs = chars = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "conversion":
                    text, _ = charset.decode(rec.content_stream().read(), rec.content_type, default="utf-8")
                elif rec.rec_type in ("response", "resource"):
                    content_type = rec.http_headers.get_header("Content-Type") if rec.http_headers else rec.content_type
                    if rec.http_headers and not (rec.http_headers.get_statuscode() or "").startswith("2"):
                        continue
                    payload = rec.content_stream().read()
                    if payload_kind(content_type, payload[:512]) != "html":
                        continue
                    text = html_to_text(charset.decode(payload, content_type)[0])
                else:
                    continue
                docs += bool(text)
                chars += len(text)
    return docs, chars


def spark_run(paths: list[Path], workdir: Path, warmup: Path) -> tuple[float, dict]:
    from conftest import make_run_config
    from pipeline.engines.spark import SparkEngine
    from pipeline.runner import run_stage
    from pipeline.stages.ingest import IngestStage

    warm_cfg = make_run_config(workdir / "warm", {"ingest": {"sources": [{"name": "w", "paths": [str(warmup)]}]}},
                               spark={"master": "local[1]"})
    engine = SparkEngine(warm_cfg)
    run_stage(IngestStage(warm_cfg), engine, force=True)
    cfg = make_run_config(workdir / "timed", {"ingest": {"sources": [{"name": "bench", "paths": [str(p) for p in paths]}]}},
                          spark={"master": "local[1]"})
    engine.cfg = cfg
    start = time.perf_counter()
    summary = run_stage(IngestStage(cfg), engine, force=True)
    seconds = time.perf_counter() - start
    engine.close()
    return seconds, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="input size in MB (compressed), at least")
    parser.add_argument("--files", type=int, default=8, help="number of input files (work units)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="glmdata-bench-ingest-"))
    try:
        paths = build_input(tmp / "input", args.mb, args.files)
        size = sum(p.stat().st_size for p in paths)
        print(f"input: {len(paths)} files, {size / 1e6:.0f} MB compressed, in {tmp / 'input'}")
        # bare, stage, bare: the machine's load drifts, and the mean of the two bare runs brackets it
        bare_times = []
        start = time.perf_counter()
        docs, _ = bare_loop(paths)
        bare_times.append(time.perf_counter() - start)
        spark_s, summary = spark_run(paths, tmp / "work", DATA / "warc/cc-2019-single-record.warc.gz")
        start = time.perf_counter()
        bare_loop(paths)
        bare_times.append(time.perf_counter() - start)
        bare_s = sum(bare_times) / 2
        print(f"bare loop (warcio + resiliparse, 1 core): {bare_s:.1f} s ({bare_times[0]:.1f} before, "
              f"{bare_times[1]:.1f} after), {size / 1e6 / bare_s:.2f} MB/s, {docs} documents")
        print(f"ingest stage, Spark local[1]:           {spark_s:.1f} s, {size / 1e6 / spark_s:.2f} MB/s, "
              f"{summary['kept']['docs']} documents kept, {summary['in']['bytes'] / 1e6:.0f} MB uncompressed in")
        print(f"ratio (stage / bare loop): {bare_s / spark_s:.2f}  (target >= 0.8)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
