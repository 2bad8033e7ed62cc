"""`glmdata inspect <stage dir>`: look at what a stage rejected, to judge a rule's false positives.

Without --reason it lists every reason with its document count (from stats.json when the stage
finished, else by counting rows under rejected/). With --reason it prints a sample of rejected
documents: id, url, the rule's detail (the value that failed) and a preview of the text. The sample
is drawn with a seed over all of the reason's files, reading only the rows it shows.
"""
from __future__ import annotations

import argparse
import json
import random

import pyarrow.parquet as pq
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.registry import register_command
from pipeline.schema import REJECT_DETAIL, REJECT_REASON, reject_reason_slug

PREVIEW_COLUMNS = ["id", "url", "source", "lang", "text", REJECT_REASON, REJECT_DETAIL]


def reason_counts(stage_dir: str) -> dict[str, int]:
    """Rejected documents per reason."""
    stats_path = storage.join(stage_dir, "stats.json")
    if storage.exists(stats_path):
        dropped = json.loads(storage.read_text(stats_path)).get("dropped", {})
        return {reason: counts["docs"] for reason, counts in dropped.items()}
    counts: dict[str, int] = {}
    for slug in storage.listdir(storage.join(stage_dir, "rejected")):
        for path in _parts(stage_dir, slug):
            reasons = pq.ParquetFile(storage.open_input(path)).read(columns=[REJECT_REASON]).column(0)
            for reason in reasons.to_pylist():
                counts[reason] = counts.get(reason, 0) + 1
    return counts


def _parts(stage_dir: str, slug: str) -> list[str]:
    return [p for p in storage.expand(storage.join(stage_dir, "rejected", slug)) if p.endswith(".parquet")]


def matching_slugs(stage_dir: str, reason: str) -> list[str]:
    """Folders of `reason`: its exact folder, else every reason it is a prefix of
    ("lang_other" matches lang_other:ja, lang_other:ko, ...)."""
    slugs = storage.listdir(storage.join(stage_dir, "rejected"))
    slug = reject_reason_slug(reason)
    if slug in slugs:
        return [slug]
    return [s for s in slugs if s.startswith(slug)]


def sample_rejected(stage_dir: str, reason: str, n: int, seed: int = 0) -> list[dict]:
    """Up to `n` rejected rows of `reason`, drawn uniformly with `seed`, in file order."""
    files = [p for slug in matching_slugs(stage_dir, reason) for p in _parts(stage_dir, slug)]
    sizes = [pq.ParquetFile(storage.open_input(p)).metadata.num_rows for p in files]
    total = sum(sizes)
    chosen = sorted(random.Random(seed).sample(range(total), min(n, total)))
    rows, start = [], 0
    for path, size in zip(files, sizes):
        wanted = [i - start for i in chosen if start <= i < start + size]
        start += size
        if not wanted:
            continue
        pf = pq.ParquetFile(storage.open_input(path))
        columns = [c for c in PREVIEW_COLUMNS if c in pf.schema_arrow.names]
        rows += pf.read(columns=columns).take(wanted).to_pylist()
    return rows


def preview(text: str | None, width: int) -> str:
    """The start of a text on one line: newlines shown as ⏎, cut at `width` characters."""
    if not text:
        return "(empty text)"
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if width <= 0 or len(flat) <= width else flat[:width] + f" … (+{len(flat) - width} chars)"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage_dir", help="a stage's output folder, e.g. work/demo/quality (local, gs://, s3://)")
    p.add_argument("--reason", "-r", help="the rejection reason to sample (a prefix such as lang_other "
                                          "matches all of lang_other:*); omit to list reasons with counts")
    p.add_argument("-n", type=int, default=5, help="how many documents to show (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--width", type=int, default=400, help="characters of text to preview; 0 = whole text")


@register_command("inspect", None, "print sample rejected documents of a stage, or its reasons with counts",
                  _add_arguments)
def inspect_command(args: argparse.Namespace) -> int:
    console = Console()
    if not storage.is_dir(args.stage_dir):
        raise ConfigError(f"{args.stage_dir}: not a stage output folder (expected <workdir>/<stage>)")
    counts = reason_counts(args.stage_dir)
    if not args.reason:
        table = Table(title=f"rejected in {args.stage_dir}")
        table.add_column("reason")
        table.add_column("documents", justify="right")
        for reason, docs in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(reason, str(docs))
        console.print(table if counts else f"{args.stage_dir}: nothing rejected")
        return 0
    rows = sample_rejected(args.stage_dir, args.reason, args.n, args.seed)
    if not rows:
        known = ", ".join(sorted(counts)) or "none"
        console.print(f"no rejected documents with reason {args.reason!r}; reasons here: {known}")
        return 1
    for row in rows:
        console.rule(f"{row.get(REJECT_REASON)}  {row.get('id')}", style="dim")
        for key in ("url", "source", "lang", REJECT_DETAIL):
            if row.get(key) is not None:
                console.print(f"[bold]{key}[/bold]: {escape(str(row[key]))}", highlight=False)
        console.print(preview(row.get("text"), args.width), markup=False, highlight=False)
    return 0
