"""Cross-document paragraph dedup on real crawl pages: how much boilerplate it removes, how much real
text it costs, at each limit (a line is removed when found in more than `max_docs` documents).

Runs the pipeline (ingest, langid, quality with C4's line rule off as the shipped configs have
it, then dedup with the lowest limit so that every line
found on two or more surviving pages is reported) on the crawl dumps in ../shared/data (WARC, WET,
CCNet and dolma JSONL), then, for each limit, counts the removed lines and bytes and, from the
labels in bench/paragraph_labels.tsv (line key -> boilerplate | content, labelled by reading the
lines), the share of removed bytes that was real content. Lines without a label are listed
(`--unlabelled`) so they can be labelled; the labels file holds keys only, never the text.

    .venv/bin/python bench/dedup_paragraphs.py [--engine beam] [--unlabelled]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from filters.paragraphs import line_key, normalized_line  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
LABELS = REPO / "bench" / "paragraph_labels.tsv"
LIMITS = (1, 2, 3, 5, 10)
CACHE = Path(tempfile.gettempdir()) / "glmdata-bench-paragraphs.json"
console = Console(width=160)

SOURCES = [
    {"name": "crawl-warc", "format": "warc", "paths": [str(SHARED / "crawl" / "warc" / "*.warc.gz")]},
    {"name": "crawl-wet", "format": "wet", "paths": [str(SHARED / "crawl" / "wet" / "*.wet.gz")]},
    {"name": "ccnet-zh", "preset": "ccnet", "paths": [str(SHARED / "jsonl" / "chinesewebtext-cc-2021-43-zh.jsonl")]},
    {"name": "dolma-en", "preset": "dolma", "paths": [str(SHARED / "jsonl" / "cc_en_head-*.jsonl.gz")]},
]


def run(workdir: Path, engine_name: str) -> dict[str, dict]:
    """The pipeline up to dedup, where dedup reports every line found on two or more surviving
    pages; then dedup again on langid's output (every page before the quality rules), for how much
    boilerplate the crawl holds at all. {"after quality": stats, "after langid": stats}."""
    from pipeline.stages import load_config
    from pipeline.engines import make_engine
    from pipeline.run_all import run_pipeline
    from pipeline.runner import run_stage
    from pipeline.stages.dedup import DedupStage

    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "run": {"workdir": str(workdir / "out"), "engine": engine_name, "spark": {"master": "local[2]"}},
        "ingest": {"sources": SOURCES},
        "quality": {"en": {"c4": {"filter_no_terminal_punct": False}}},  # as configs/*.yaml ship it (FineWeb)
        "dedup": {"paragraphs": {"max_docs": {"*": 1}, "min_doc_chars": {"*": 0}, "samples": 100_000}},
    }))
    cfg = load_config(cfg_path)
    engine = make_engine(cfg)
    out = workdir / "out"
    try:
        run_pipeline(cfg, engine, last="dedup", report=False, console=Console(quiet=True))
        runs = {"after quality": json.loads((out / "dedup" / "stats.json").read_text())}
        raw = load_config(cfg_path, {"run.workdir": str(workdir / "raw")})
        (workdir / "raw").mkdir()
        shutil.copytree(out / "langid", workdir / "raw" / DedupStage.upstream)
        runs["after langid"] = run_stage(DedupStage(raw), engine)
    finally:
        engine.close()
    return runs


def read_labels() -> dict[int, str]:
    labels = {}
    for line in LABELS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, label = line.split("\t")[:2]
            labels[int(key)] = label
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["spark", "beam"], default="beam")
    ap.add_argument("--unlabelled", action="store_true", help="print removed lines that have no label yet")
    ap.add_argument("--reuse", action="store_true", help=f"reuse the last run's dedup stats ({CACHE}) while labelling")
    args = ap.parse_args()
    if args.reuse and CACHE.exists():
        stats = json.loads(CACHE.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="paragraph-bench-") as tmp:
            stats = run(Path(tmp), args.engine)
        CACHE.write_text(json.dumps(stats))
    labels = read_labels()
    for name, run_stats in stats.items():
        table_for(name, run_stats, labels, args.unlabelled)


def table_for(name: str, stats: dict, labels: dict[int, str], unlabelled: bool) -> None:
    report = stats["report"]["paragraph_dedup"]
    dedup_in = stats["in"]["bytes"]
    lines = []
    for r in report["top_removed"]:
        key = line_key(normalized_line(r["line"], r["lang"]), r["lang"])
        lines.append({**r, "key": key, "bytes": len(r["line"].encode()) + 1, "label": labels.get(key)})
    if unlabelled:
        for r in lines:
            if r["label"] is None:
                console.print(f"{r['key']}\t{r['documents']}\t{r['lang']}\t{r['line'][:120]!r}")
    table = Table(title=f"paragraph dedup, {name}: {stats['in']['docs']} crawl documents, {dedup_in / 1e3:.0f} kB; "
                        f"a line is removed when more than max_docs pages have it")
    for col in ("max_docs", "distinct lines", "pages x lines", "bytes removed", "share of text", "labelled lines",
                "boilerplate bytes", "content bytes", "content share of removed"):
        table.add_column(col)
    for limit in LIMITS:
        removed = [r for r in lines if r["documents"] > limit]
        occurrences = sum(r["documents"] for r in removed)
        nbytes = sum(r["bytes"] * r["documents"] for r in removed)
        labelled = [r for r in removed if r["label"]]
        boiler = sum(r["bytes"] * r["documents"] for r in labelled if r["label"] == "boilerplate")
        content = sum(r["bytes"] * r["documents"] for r in labelled if r["label"] == "content")
        table.add_row(str(limit), str(len(removed)), str(occurrences), f"{nbytes:,}", f"{nbytes / dedup_in:.2%}",
                      f"{len(labelled)}/{len(removed)}", f"{boiler:,}", f"{content:,}",
                      f"{content / max(boiler + content, 1):.1%}")
    console.print(table)
    console.print(f"(bytes: a line's UTF-8 length + newline x pages, once per page; at max_docs 1 the stage removed "
                  f"{report['lines_removed']} lines, {report['bytes_removed']:,} bytes, repeats within a page included)")


if __name__ == "__main__":
    main()
