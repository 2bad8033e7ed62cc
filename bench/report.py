"""What the report's recorded profiles cost and save, measured side by side in one run.

1. Recording: a stage's UnitWriter writing real documents (../shared/data text, English and Chinese,
   repeated to --mb MB) to kept Parquet, with the profile recorded (pipeline/doc_profile.py) and with
   recording switched off; prints MB/s of each and the share of write time the profile adds.
2. Reporting: on a finished workdir (--workdir; by default the demo pipeline is run on Beam into a
   temporary one), `collect` from the recorded profiles (no engine) against the recomputation the
   report did before (document histograms on an engine, Beam DirectRunner and Spark local), and prints
   the ratio.

    .venv/bin/python bench/report.py [--mb 40] [--workdir W] [--spark]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from pipeline import doc_profile  # noqa: E402
from pipeline.schema import DOC_SCHEMA  # noqa: E402
from pipeline.stage import UnitWriter  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "text"
FILES = {"en": "en-news-scrapinghub.jsonl", "zh": "zh-news-thucnews.jsonl"}
BATCH = 1024


def documents(megabytes: float) -> list[pa.Table]:
    rows = []
    for lang, name in FILES.items():
        for i, line in enumerate((DATA / name).read_text(encoding="utf-8").splitlines()):
            text = json.loads(line)["text"]
            rows.append({"text": text, "lang": lang, "source": f"{lang}-news", "url": f"https://example.org/{i}"})
    out, size, copy = [], 0, 0
    while size < megabytes * 1e6:
        batch = [{**r, "id": f"doc:{copy}:{i}"} for i, r in enumerate(rows)]
        size += sum(len(r["text"].encode()) for r in batch)
        out += [pa.Table.from_pylist(batch[k:k + BATCH], DOC_SCHEMA) for k in range(0, len(batch), BATCH)]
        copy += 1
    return out


def write_seconds(batches: list[pa.Table], folder: str, record: bool) -> float:
    original = doc_profile.record
    if not record:
        doc_profile.record = lambda *args, **kwargs: None
    try:
        started = time.perf_counter()
        out = UnitWriter(folder, "quality", 0)
        for i, table in enumerate(batches):
            if i % 10 == 9:  # some rejected rows too, as a filter stage has (record_seconds does the same)
                out.reject(table, "too_short", 0, ["words=3"] * table.num_rows)
            else:
                out.keep(table, 0)
        out.close()
        return time.perf_counter() - started
    finally:
        doc_profile.record = original


def record_seconds(batches: list[pa.Table]) -> float:
    profile = doc_profile.empty_profile()
    started = time.perf_counter()
    for i, table in enumerate(batches):
        doc_profile.record(profile, table, "too_short" if i % 10 == 9 else doc_profile.KEPT, "quality",
                           ["words=3"] * table.num_rows if i % 10 == 9 else None)
    return time.perf_counter() - started


def recording(megabytes: float, repeats: int = 5) -> None:
    batches = documents(megabytes)
    size = sum(pa.compute.sum(pa.compute.binary_length(t.column("text"))).as_py() for t in batches) / 1e6
    record_seconds(batches[:1])  # first-call imports out of the timing
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, float] = {}
        for r in range(repeats):  # interleaved, best of `repeats`
            for name, run in (("plain", lambda: write_seconds(batches, f"{tmp}/plain{r}", False)),
                              ("with profile", lambda: write_seconds(batches, f"{tmp}/profile{r}", True)),
                              ("profile only", lambda: record_seconds(batches))):
                times[name] = min(times.get(name, float("inf")), run())
    print(f"1. UnitWriter on {size:,.1f} MB of text ({sum(t.num_rows for t in batches):,} documents), best of {repeats}:")
    print(f"   Parquet write without profile {size / times['plain']:,.1f} MB/s, with profile "
          f"{size / times['with profile']:,.1f} MB/s; recording alone {size / times['profile only']:,.1f} MB/s "
          f"= {100 * times['profile only'] / times['plain']:.1f}% of the write's time")


def demo_workdir(root: Path) -> Path:
    from rich.console import Console

    from demo_runs import DEMO, demo_sources
    from pipeline.stages import load_config
    from pipeline.demo_corpus import generate
    from pipeline.engines.beam import BeamEngine
    from pipeline.run_all import run_pipeline

    generate(root / "corpus")
    cfg = load_config(DEMO, {"run.workdir": str(root / "work"), "ingest.sources": demo_sources(root / "corpus"),
                             "run.engine": "beam"})
    run_pipeline(cfg, BeamEngine(cfg), report=False, console=Console(quiet=True))
    return root / "work"


def reporting(workdir: Path, spark: bool) -> None:
    from conftest import make_run_config
    from pipeline.engines.beam import BeamEngine
    from pipeline.report import collect, document_histograms, document_stages, read_stage_stats

    started = time.perf_counter()
    collect(str(workdir))
    recorded = time.perf_counter() - started
    stages = [s["stage"] for s in document_stages(read_stage_stats(str(workdir)))]
    print(f"2. report of {workdir}: from the recorded profiles {recorded:.2f} s (no engine)")
    engines = [("beam", BeamEngine)]
    if spark:
        from pipeline.engines.spark import SparkEngine

        engines.append(("spark", SparkEngine))
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine_class in engines:
            started = time.perf_counter()
            engine = engine_class(make_run_config(Path(tmp) / name, engine=name))
            document_histograms(str(workdir), stages, engine)
            engine.close()
            seconds = time.perf_counter() - started
            print(f"   recomputed on {name} (engine start included) {seconds:.2f} s: "
                  f"{seconds / recorded:,.0f}x the recorded path")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=40, help="MB of text for the recording figure (default 40)")
    parser.add_argument("--workdir", type=Path, help="a finished run (default: the demo, run on Beam)")
    parser.add_argument("--spark", action="store_true", help="also time the recomputation on Spark local")
    args = parser.parse_args()
    recording(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        reporting(args.workdir or demo_workdir(Path(tmp)), args.spark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
