"""The terminal summary of one stage's stats.json."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def print_stage_summary(summary: dict, workdir: str, console: Console | None = None) -> None:
    console = console or Console()
    name = summary["stage"]
    if summary.get("skipped"):
        title = f"{name}: skipped (finished earlier with the same config and input)"
    else:
        title = f"{name}: {summary['seconds']:.1f} s on {summary['engine']}"
    table = Table(title=title, show_edge=False)
    table.add_column("")
    table.add_column("documents", justify="right")
    table.add_column("bytes", justify="right")
    table.add_row("in", f"{summary['in']['docs']:,}", _mb(summary["in"]["bytes"]))
    if summary.get("created", {}).get("docs"):
        table.add_row("created", f"{summary['created']['docs']:,}", _mb(summary["created"]["bytes"]))
    table.add_row("kept", f"{summary['kept']['docs']:,}", _mb(summary["kept"]["bytes"]))
    for reason, c in summary["dropped"].items():
        table.add_row(f"dropped: {reason}", f"{c['docs']:,}", _mb(c["bytes"]))
    for reason, c in summary["errors"].items():
        table.add_row(f"[red]error: {reason}[/red]", f"{c['docs']:,}", _mb(c["bytes"]))
    console.print(table)
    console.print(f"output: {workdir}/{name}/")
