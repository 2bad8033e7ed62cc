"""The terminal summary of one stage's stats.json: one line with its key figures, the full table
with `glmdata -v`."""
from __future__ import annotations

import logging

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.report_text import docs_in, plain, readable_bytes, visible

# Stages whose "dropped" documents are a sample choice, not a filter of the data flow.
SAMPLE_STAGES = {"tokenizer": "not in the training sample"}


def _drop_label(stage: str, reason: str) -> str:
    return f"{SAMPLE_STAGES[stage]}: {plain(reason)}" if stage in SAMPLE_STAGES else f"dropped: {plain(reason)}"


def stage_line(summary: dict) -> str:
    """`langid: 1,234 in -> 1,100 kept (89.1%), 0.92 MB text; dropped lang_other 120, ...; 4.5 s on spark`."""
    name = summary["stage"]
    src = summary["in"]["docs"] + summary.get("created", {}).get("docs", 0)
    kept = summary["kept"]["docs"]
    share = f" ({100 * kept / src:.1f}%)" if src else ""
    # "<stage>: skipped" first for a skipped stage: the one thing to know, and what scripts look for
    parts = [f"{name}: skipped (finished earlier with the same config and input): {docs_in(summary)} in -> {kept:,} kept"
             if summary.get("skipped") else f"{name}: {docs_in(summary)} in -> {kept:,} kept{share}"]
    if summary.get("kept_text_bytes"):
        parts[0] += f", {readable_bytes(summary['kept_text_bytes'])} text"
    drops = sorted(summary["dropped"].items(), key=lambda kv: -kv[1]["docs"])
    if drops:
        verb = SAMPLE_STAGES.get(name, "dropped")
        shown = ", ".join(f"{plain(reason)} {c['docs']:,}" for reason, c in drops[:3])
        parts.append(f"{verb}: {shown}" + (f" (+{len(drops) - 3} reasons)" if len(drops) > 3 else ""))
    errors = sum(c["docs"] for c in summary["errors"].values())
    if errors or summary["errors"]:
        parts.append(f"[red]errors {errors:,}[/red]")
    if not summary.get("skipped"):
        parts.append(f"{summary.get('seconds', 0):.1f} s on {summary.get('engine', '?')}")
    return "; ".join(parts)


def print_stage_summary(summary: dict, workdir: str, console: Console | None = None) -> None:
    console = console or Console()
    name = summary["stage"]
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        console.print(stage_line(summary), highlight=False)
        return
    if summary.get("skipped"):
        title = f"{name}: skipped (finished earlier with the same config and input)"
    else:
        title = f"{name}: {summary['seconds']:.1f} s on {summary['engine']}"
    table = Table(title=title, show_edge=False)
    table.add_column("")
    table.add_column("documents", justify="right")
    table.add_column("bytes", justify="right")
    table.add_row("in", f"{summary['in']['docs']:,}", readable_bytes(summary["in"]["bytes"]))
    if summary.get("created", {}).get("docs"):
        table.add_row("created", f"{summary['created']['docs']:,}", readable_bytes(summary["created"]["bytes"]))
    table.add_row("kept", f"{summary['kept']['docs']:,}", readable_bytes(summary["kept"]["bytes"]))
    for reason, c in summary["dropped"].items():
        table.add_row(_drop_label(name, reason), f"{c['docs']:,}", readable_bytes(c["bytes"]))
    for reason, c in summary["errors"].items():
        table.add_row(Text(f"error: {visible(reason)}", style="red"), f"{c['docs']:,}", readable_bytes(c["bytes"]))
    console.print(table)
    console.print(f"output: {workdir}/{name}/")
