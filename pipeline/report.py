"""`glmdata report <workdir>`: a terminal summary and one self-contained HTML page of a run.

Reads every stage's stats.json (counts and the stage's own "report" aggregates), the shards
manifest, and computes the distributions that need the documents themselves (length per language
after each stage, dedup cluster sizes) on the engine: one task per Parquet file returns a small
histogram, and only those histograms reach the driver. Samples of rejected documents are the first
few rows of each reason's first file, read on the driver.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from pipeline import storage
from pipeline.registry import register_command
from pipeline.stages import STAGE_ORDER

SAMPLES_PER_REASON = 3
SAMPLE_CHARS = 600
DOC_COLUMNS = ("text", "lang")
CLUSTER_SIZE_COLUMN = "dup_cluster_size"
SIGNAL_PREFIX = "q_"  # the quality stage's signal columns
FRACTION_BINS = 20  # shares and ratios: 0.05-wide bins over [0, 1], the last bin holding >= 1
NONPOSITIVE_BIN = -1000  # counts and lengths <= 0 (below every quarter-octave bin)


# ---------------------------------------------------------------------------------------------
# Engine aggregates


def log2_bin(n: int) -> int:
    """Power-of-two bin: 0 -> -1, 1 -> 0, 2..3 -> 1, 4..7 -> 2, ..."""
    return int(math.floor(math.log2(n))) if n > 0 else -1


def is_fraction_signal(column: str) -> bool:
    return column.endswith(("_frac", "_ratio", "_nonl")) or column == "q_score"


def signal_bins(column: str, values: np.ndarray) -> np.ndarray:
    """Fixed bins, so that per-file histograms add up: linear over [0, 1] for shares and ratios,
    quarter-octaves (bin b holds [2^(b/4), 2^((b+1)/4))) for counts and lengths, NONPOSITIVE_BIN for <= 0."""
    if is_fraction_signal(column):
        return np.clip(np.floor(values * FRACTION_BINS), 0, FRACTION_BINS).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        quarter_octaves = np.floor(4 * np.log2(values))
    return np.where(values > 0, quarter_octaves, NONPOSITIVE_BIN).astype(np.int64)


def _signal_histograms(batch, langs: np.ndarray, into: dict) -> None:
    for column in batch.schema.names:
        if not column.startswith(SIGNAL_PREFIX):
            continue
        values = batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(values) & (langs != "")
        if not present.any():
            continue
        names, lang_codes = np.unique(langs[present], return_inverse=True)
        pairs, counts = np.unique(np.stack([lang_codes, signal_bins(column, values[present])]), axis=1,
                                  return_counts=True)
        for (code, b), n in zip(pairs.T.tolist(), counts.tolist()):
            into[column][names[code]][b] += n


@dataclass
class HistogramTask:
    """Runs on a worker: one Parquet file in, {"lengths": {lang: {bin: n}}, "clusters": {bin: n},
    "signals": {q_column: {lang: {bin: n}}}} out (signals only for the quality stage's kept documents)."""

    batch_size: int = 8192

    def __call__(self, unit: tuple[str, str]) -> dict:
        stage, path = unit
        pf = pq.ParquetFile(storage.open_input(path))
        names = set(pf.schema_arrow.names)
        signal_columns = [c for c in pf.schema_arrow.names if c.startswith(SIGNAL_PREFIX)] if stage == "quality" else []
        columns = [c for c in (*DOC_COLUMNS, CLUSTER_SIZE_COLUMN) if c in names] + signal_columns
        lengths: dict[str, Counter] = defaultdict(Counter)
        clusters: Counter = Counter()
        signals: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        if "text" in names and "lang" in names:
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=columns):
                chars = pc.utf8_length(batch.column("text")).fill_null(0).to_pylist()
                langs = batch.column("lang").to_pylist()
                for lang, n in zip(langs, chars):
                    if lang:
                        lengths[lang][log2_bin(n)] += 1
                if signal_columns:
                    _signal_histograms(batch, np.array([lang or "" for lang in langs], dtype=object), signals)
                if CLUSTER_SIZE_COLUMN in columns:
                    for size in batch.column(CLUSTER_SIZE_COLUMN).to_pylist():
                        if size:
                            clusters[log2_bin(int(size))] += 1
        return {"stage": stage,
                "lengths": {lang: {str(b): n for b, n in c.items()} for lang, c in lengths.items()},
                "clusters": {str(b): n for b, n in clusters.items()},
                "signals": {col: {lang: {str(b): n for b, n in c.items()} for lang, c in per_lang.items()}
                            for col, per_lang in signals.items()}}


def _by_bin(counts: Counter) -> dict:
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def document_histograms(workdir: str, stages: list[str], engine) -> tuple[dict, dict, dict]:
    """Length histograms per stage and language, dedup cluster sizes, and the quality signals'
    histograms per language, computed on the engine."""
    units = [(stage, path) for stage in stages
             for path in storage.expand(storage.join(workdir, stage, "data")) if path.endswith(".parquet")]
    if not units or engine is None:
        return {}, {}, {}
    lengths: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    clusters: Counter = Counter()
    signals: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for result in engine.map_units("report histograms", HistogramTask(), units):
        for lang, counts in result["lengths"].items():
            lengths[result["stage"]][lang].update(counts)
        if result["stage"] == "dedup":
            clusters.update(result["clusters"])
        for column, per_lang in result["signals"].items():
            for lang, counts in per_lang.items():
                signals[column][lang].update(counts)
    ordered = {s: {lang: _by_bin(c) for lang, c in sorted(lengths[s].items())} for s in stages if s in lengths}
    return (ordered, _by_bin(clusters),
            {col: {lang: _by_bin(c) for lang, c in sorted(per_lang.items())} for col, per_lang in sorted(signals.items())})


# ---------------------------------------------------------------------------------------------
# Driver-side reads of small things


def read_stage_stats(workdir: str) -> list[dict]:
    """stats.json of every stage in the workdir: data-flow order first, then any other stage by name."""
    names = [n for n in STAGE_ORDER if n != "report"]
    names += [n for n in storage.listdir(workdir) if n not in names and not n.startswith((".", "_"))]
    out = []
    for name in names:
        path = storage.join(workdir, name, "stats.json")
        if storage.exists(path):
            out.append(json.loads(storage.read_text(path)))
    return out


def _first_rows(path: str, columns: list[str], n: int) -> list[dict]:
    pf = pq.ParquetFile(storage.open_input(path))
    cols = [c for c in columns if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=n, columns=cols):
        return batch.to_pylist()
    return []


def rejected_samples(workdir: str, stages: list[dict]) -> tuple[dict, dict]:
    samples: dict[str, dict[str, list]] = {}
    errors: dict[str, list] = {}
    for s in stages:
        name = s["stage"]
        rejected = storage.join(workdir, name, "rejected")
        for slug in storage.listdir(rejected):
            files = [p for p in storage.expand(storage.join(rejected, slug)) if p.endswith(".parquet")]
            if not files:
                continue
            rows = _first_rows(files[0], ["id", "url", "text", "reject_reason", "reject_detail"], SAMPLES_PER_REASON)
            samples.setdefault(name, {})[rows[0].get("reject_reason") or slug if rows else slug] = [
                {"id": r.get("id"), "url": r.get("url"), "detail": r.get("reject_detail"),
                 "text": (r.get("text") or "")[:SAMPLE_CHARS]} for r in rows]
        if s.get("errors"):
            files = [p for p in storage.expand(storage.join(workdir, name, "errors")) if p.endswith(".parquet")]
            if files:
                errors[name] = [{**r, "message": (r.get("message") or "")[:SAMPLE_CHARS]} for r in
                                _first_rows(files[0], ["source_file", "source_offset", "reason", "message"],
                                            SAMPLES_PER_REASON)]
    return samples, errors


def shards_manifest(workdir: str) -> dict | None:
    for candidate in ("shards/manifest.json", "shards/data/manifest.json"):
        path = storage.join(workdir, *candidate.split("/"))
        if storage.exists(path):
            return json.loads(storage.read_text(path))
    return None


def collect(workdir: str, engine) -> dict:
    stages = read_stage_stats(workdir)
    doc_stages = [s["stage"] for s in stages if s["stage"] not in ("ingest", "tokenizer", "shards")]
    lengths, clusters, signals = document_histograms(workdir, doc_stages, engine)
    samples, error_samples = rejected_samples(workdir, stages)
    return {"workdir": workdir, "generated_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "stages": stages, "lengths": lengths, "dedup_clusters": clusters, "quality_signals": signals,
            "shards_manifest": shards_manifest(workdir), "samples": samples, "error_samples": error_samples}


# ---------------------------------------------------------------------------------------------
# Output


def print_summary(data: dict, html_path: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"glmdata run: {data['workdir']}", show_edge=False)
    for col, justify in (("stage", "left"), ("time", "right"), ("docs in", "right"), ("MB in", "right"),
                         ("kept", "right"), ("MB kept", "right"), ("dropped", "right"), ("errors", "right")):
        table.add_column(col, justify=justify)
    for s in data["stages"]:
        dropped = sum(c["docs"] for c in s["dropped"].values())
        errors = sum(c["docs"] for c in s["errors"].values())
        table.add_row(s["stage"], "skipped" if s.get("skipped") else f"{s.get('seconds', 0):.1f} s",
                      f"{s['in']['docs'] + s.get('created', {}).get('docs', 0):,}",
                      f"{(s['in']['bytes'] + s.get('created', {}).get('bytes', 0)) / 1e6:,.2f}",
                      f"{s['kept']['docs']:,}", f"{s['kept']['bytes'] / 1e6:,.2f}", f"{dropped:,}",
                      f"[red]{errors:,}[/red]" if errors else "0")
    console.print(table)
    manifest = data.get("shards_manifest")
    if manifest and manifest.get("shards"):
        tokens = sum(s.get("tokens", 0) for s in manifest["shards"])
        console.print(f"shards: {len(manifest['shards'])} files, {tokens:,} tokens")
    console.print(f"HTML report: [bold]{html_path}[/bold]")


def write_report(workdir: str, engine, console: Console | None = None) -> str:
    """Collect, write <workdir>/report/{report.html,report.json}, print the summary; return the HTML path."""
    from pipeline.report_html import render_page

    data = collect(workdir, engine)
    out = storage.join(workdir, "report")
    storage.write_text(storage.join(out, "report.json"), json.dumps(data, indent=1, sort_keys=True, default=str))
    html_path = storage.join(out, "report.html")
    storage.write_text(html_path, render_page(data))
    print_summary(data, html_path, console)
    return html_path


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", help="the run's workdir (run.workdir of its config): local, gs:// or s3://")
    p.add_argument("--engine", choices=["spark", "beam"], default="spark",
                   help="engine that computes the length and cluster histograms (default spark, local mode)")
    p.add_argument("--master", default="local[*]", help="Spark master for the histograms (default local[*])")


@register_command("report", None, "summarise a run: terminal table and one self-contained HTML page", _arguments)
def report_command(args: argparse.Namespace) -> int:
    from pipeline.config import RunConfig, RunSection, SparkOptions
    from pipeline.engines import make_engine

    workdir = args.workdir if "://" in args.workdir else storage.filesystem(args.workdir)[1]
    if not storage.is_dir(workdir):
        print(f"report: {args.workdir} is not a folder (expected a run's workdir)", file=sys.stderr)
        return 2
    cfg = RunConfig(path="<report>", run=RunSection(workdir=workdir, engine=args.engine,
                                                     spark=SparkOptions(master=args.master)), sections={}, raw={})
    engine = make_engine(cfg)
    try:
        write_report(workdir, engine)
    finally:
        engine.close()
    return 0
