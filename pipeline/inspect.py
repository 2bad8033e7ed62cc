"""`glmdata inspect`: look at what a stage rejected (to judge a rule's false positives), or at its errors.

    glmdata inspect <workdir>                     every stage, its reasons, and whether their documents were kept
    glmdata inspect <workdir>/<stage>             the stage's reasons with counts
    glmdata inspect <workdir>/<stage> -r REASON   a sample of rejected documents of REASON
    glmdata inspect <workdir>/<stage> --errors    error rows: file, offset, reason, message

Counts come from stats.json when the stage finished, else from the rows under rejected/. Some
drops are counted but not kept as documents, because there is no document or keeping it would
copy the corpus (ingest's non-document records; mix's documents not sampled; the tokenizer's
sample choice): their reasons are listed as "counted only" and asking for them says so.
A sample is drawn with a seed as a sequence of distinct row positions over all of the reason's
files, so `-n k` is the first k documents of `-n k+1`; only the rows shown are read in full.
A stage folder without _SUCCESS (running, crashed, half copied) is shown as unfinished, a workdir
listing marks stages built from an upstream output replaced since (pipeline/report.py, stale_stages), and a
folder that holds no stage output is refused rather than reported as "nothing rejected".
"""
from __future__ import annotations

import argparse
import json
import random

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from pipeline import storage
from pipeline.cli import at_least
from pipeline.config import UsageError
from pipeline.registry import register_command
from pipeline.report import (FLOW, read_counts, read_stage_stats, stage_cell, stale_note, stale_stages,
                             unfinished_note, unfinished_stages)
from pipeline.report_text import plain, visible
from pipeline.runner import LOCK, SUCCESS
from pipeline.schema import REJECT_DETAIL, REJECT_REASON, reject_reason_slug

PREVIEW_COLUMNS = ["id", "url", "source", "lang", "text", REJECT_REASON, REJECT_DETAIL]
ERROR_COLUMNS = ["source_file", "source_offset", "reason", "doc_id", "bytes", "message"]


def reason_counts(stage_dir: str, stats: dict | None) -> dict[str, int]:
    """Rejected documents per reason: from the stage's `stats` (its stats.json) when it has them."""
    if stats is not None:
        return {reason: counts["docs"] for reason, counts in stats.get("dropped", {}).items()}
    counts: dict[str, int] = {}
    for slug in storage.listdir(storage.join(stage_dir, "rejected")):
        for path in _parts(stage_dir, "rejected", slug):
            reasons = pq.ParquetFile(storage.open_input(path)).read(columns=[REJECT_REASON]).column(0)
            for reason in reasons.to_pylist():
                counts[reason] = counts.get(reason, 0) + 1
    return counts


def _parts(stage_dir: str, *folder: str) -> list[str]:
    return [p for p in storage.expand(storage.join(stage_dir, *folder)) if p.endswith(".parquet")]


def matching_slugs(stage_dir: str, reason: str) -> list[str]:
    """Folders of `reason`: its exact folder, else every reason it is a prefix of
    ("lang_other" matches lang_other:ja, lang_other:ko, ...)."""
    slugs = storage.listdir(storage.join(stage_dir, "rejected"))
    slug = reject_reason_slug(reason)
    if slug in slugs:
        return [slug]
    return [s for s in slugs if s.startswith(slug)]


def is_kept(stage_dir: str, reason: str) -> bool:
    """Whether the documents of `reason` were written under rejected/ (else only counted)."""
    return bool(storage.listdir(storage.join(stage_dir, "rejected", reject_reason_slug(reason))))


def draw_positions(total: int, n: int, seed: int) -> list[int]:
    """Up to `n` distinct positions in range(total), in the order a seeded generator draws them:
    the draws do not depend on `n`, so a smaller sample is a prefix of a larger one."""
    rng, seen, out = random.Random(seed), set(), []
    n = min(n, total)
    while len(out) < n:
        if len(seen) * 2 > total:  # dense: finish with a seeded shuffle of what is left
            rest = [i for i in range(total) if i not in seen]
            rng.shuffle(rest)
            out += rest[:n - len(out)]
            break
        i = rng.randrange(total)
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _sample_rows(files: list[str], columns: list[str], n: int, seed: int) -> list[dict]:
    sizes = [pq.ParquetFile(storage.open_input(p)).metadata.num_rows for p in files]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    chosen = draw_positions(sum(sizes), n, seed)
    found: dict[int, dict] = {}
    for path, start, size in zip(files, starts, sizes):
        wanted = [i for i in chosen if start <= i < start + size]
        if not wanted:
            continue
        pf = pq.ParquetFile(storage.open_input(path))
        cols = [c for c in columns if c in pf.schema_arrow.names]
        for i, row in zip(wanted, pf.read(columns=cols).take([i - start for i in wanted]).to_pylist()):
            found[i] = row
    return [found[i] for i in chosen]


def sample_rejected(stage_dir: str, reason: str, n: int, seed: int = 0) -> list[dict]:
    """Up to `n` rejected rows of `reason`, drawn with `seed` (a smaller n gives a prefix)."""
    files = [p for slug in matching_slugs(stage_dir, reason) for p in _parts(stage_dir, "rejected", slug)]
    return _sample_rows(files, PREVIEW_COLUMNS, n, seed)


def sample_errors(stage_dir: str, n: int, seed: int = 0) -> list[dict]:
    return _sample_rows(_parts(stage_dir, "errors"), ERROR_COLUMNS, n, seed)


def preview(text: str | None, width: int) -> str:
    """The start of a text on one line: newlines shown as ⏎, control characters as escapes (an ANSI
    sequence in a crawled page must not clear the reader's terminal), cut at `width` characters."""
    if not text:
        return "(empty text)"
    flat = visible(text.replace("\r", "").replace("\n", " ⏎ "))
    return flat if width <= 0 or len(flat) <= width else flat[:width] + f" … (+{len(flat) - width} chars)"


def is_workdir(path: str) -> bool:
    """A run's workdir holds stage folders (finished or not) or a run's lease, not data/ or stats.json itself."""
    names = storage.listdir(path)
    return "stats.json" not in names and (LOCK in names or any(
        name in FLOW or storage.exists(storage.join(path, name, "stats.json")) for name in names))


def is_stage_dir(path: str) -> bool:
    """What a stage writes, finished or not."""
    return any(name in storage.listdir(path) for name in ("stats.json", SUCCESS, "data", "rejected", "errors"))


def _error_count(stage_dir: str, stats: dict | None) -> int:
    return sum(c["docs"] for c in (stats or {}).get("errors", {}).values()) or len(_parts(stage_dir, "errors"))


def _reason_table(title: str, *first: str) -> Table:
    """Reason names are what the user copies into -r: never cut, also when the output is not a terminal."""
    table = Table(title=title)
    for col in (*first, "reason", "documents", "kept for inspection"):
        table.add_column(col, justify="right" if col == "documents" else "left", no_wrap=col in ("stage", "reason"))
    return table


def list_workdir(workdir: str, console: Console) -> int:
    stages = read_stage_stats(workdir, required=())
    started = unfinished_stages(workdir)
    unfinished = ", ".join(started)
    if not stages:
        console.print(f"{workdir}: no stage has finished yet" + (f" ({unfinished} started)" if unfinished else "")
                      + _lease_holder(workdir), highlight=False, soft_wrap=True)
        return 1
    stale = stale_stages(workdir)
    table = _reason_table(f"stages in {workdir}", "stage")
    for stats in stages:
        stage_dir = storage.join(workdir, stats["stage"])
        name = stage_cell(stats["stage"], stale)
        dropped = sorted(stats.get("dropped", {}).items(), key=lambda kv: (-kv[1]["docs"], kv[0]))
        errors = _error_count(stage_dir, stats)
        if not dropped and not errors:
            table.add_row(name, "(nothing dropped)", "", "")
        for reason, c in dropped:
            how = "yes (-r)" if is_kept(stage_dir, reason) else "no: counted only"
            table.add_row(name, plain(reason), f"{c['docs']:,}", how)
        if errors:
            table.add_row(name, "[red]errors[/red]", f"{errors:,}", "yes (--errors)")
    console.print(table)
    if stale:
        console.print(stale_note(stale), soft_wrap=True)
    if unfinished:
        console.print(unfinished_note(started), soft_wrap=True)
    console.print(f"next: glmdata inspect {workdir}/<stage> -r <reason>   (or --errors)")
    return 0


def _lease_holder(workdir: str) -> str:
    """"; run <id> holds the workdir" while a run's lease (_LOCK) is there, else ""."""
    lock = storage.join(workdir, LOCK)
    if not storage.exists(lock):
        return ""
    try:
        holder = json.loads(storage.read_text(lock))
    except ValueError:  # half written
        holder = {}
    return f"; run {holder.get('run_id', '?')} holds the workdir ({lock})"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="WORKDIR_OR_STAGE_DIR",
                   help="a run's workdir (lists its stages and reasons) or a stage's output folder, e.g. "
                        "work/demo/quality (local, gs://, s3://)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--reason", "-r", help="the rejection reason to sample (a prefix such as lang_other "
                                             "matches all of lang_other:*); omit to list reasons with counts")
    view.add_argument("--errors", action="store_true", help="show error rows (source file, offset, reason, message)")
    p.add_argument("-n", type=at_least(1), default=5,
                   help="how many documents to show (default 5; -n k is a prefix of -n k+1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--width", type=at_least(0), default=400, help="characters of text to preview (default 400); 0 = whole text")


@register_command("inspect", None, "list a run's stages and drop reasons, or show sample rejected documents "
                  "or error rows of a stage", _add_arguments)
def inspect_command(args: argparse.Namespace) -> int:
    console = Console()
    path = args.path.rstrip("/")
    if not storage.is_dir(path):
        raise UsageError(f"{path}: not a folder (expected a run's workdir or <workdir>/<stage>)" + _stages_beside(path))
    if is_workdir(path):
        if args.reason or args.errors:
            raise UsageError(f"{path} is a workdir, and --reason and --errors read one stage's folder: "
                             + _stages_holding(path, args.reason))
        return list_workdir(path, console)
    if not is_stage_dir(path):
        raise UsageError(f"{path}: no stage output here (no stats.json); expected a run's workdir or "
                          "<workdir>/<stage>")
    finished = storage.exists(storage.join(path, SUCCESS))
    if not finished:
        console.print(f"[yellow]{path}: {path.rsplit('/', 1)[-1]} has not finished (no _SUCCESS): "
                      "showing what it wrote so far[/yellow]", highlight=False, soft_wrap=True)
    if args.errors:
        return _show_errors(path, args, console)
    stats = read_counts(path, required=())
    counts = reason_counts(path, stats)
    if not args.reason:
        table = _reason_table(f"rejected in {path}")
        for reason, docs in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(plain(reason), f"{docs:,}", "yes" if is_kept(path, reason) else "no: counted only")
        console.print(table if counts else f"{path}: nothing rejected")
        errors = _error_count(path, stats)
        if errors:
            console.print(f"[red]errors: {errors:,}[/red] (show them with --errors)")
        return 0 if finished or counts or errors else 1
    rows = sample_rejected(path, args.reason, args.n, args.seed)
    if not rows:
        if args.reason in counts:
            console.print(f"{path}: the {counts[args.reason]:,} documents dropped as {plain(repr(args.reason))} are counted "
                          "but not kept (this stage does not write them under rejected/; see README, 'Inspecting "
                          "a run')")
            return 1
        known = plain(", ".join(sorted(counts)) or "none")
        console.print(f"no rejected documents with reason {plain(repr(args.reason))}; reasons here: {known}")
        return 1
    for row in rows:
        console.rule(plain(f"{row.get(REJECT_REASON)}  {row.get('id')}"), style="dim")
        _print_fields(console, row, "url", "source", "lang", REJECT_DETAIL)
        console.print(preview(row.get("text"), args.width), markup=False, highlight=False)
    return 0


def _stages_beside(path: str) -> str:
    """For a mistyped stage folder (work/demo/qualty): the stages its workdir does hold, else ""."""
    workdir, _, _ = path.rpartition("/")
    if not workdir or workdir.endswith(":/") or not storage.is_dir(workdir) or not is_workdir(workdir):
        return ""
    names = [stats["stage"] for stats in read_stage_stats(workdir, required=())]
    return f"; stages in {workdir}: {', '.join(names) or 'none finished yet'}"


def _stages_holding(workdir: str, reason: str | None) -> str:
    """Which stage folders of `workdir` hold documents of `reason` (a prefix, as -r takes it), or errors when
    `reason` is None, as the commands that show them."""
    flag = f"-r {reason}" if reason else "--errors"
    names = []
    for stats in read_stage_stats(workdir, required=()):
        stage_dir = storage.join(workdir, stats["stage"])
        if (any(r.startswith(reason) for r in stats.get("dropped", {})) if reason
                else _error_count(stage_dir, stats)):
            names.append(stats["stage"])
    if not names:
        what = f"dropped documents as {plain(repr(reason))}" if reason else "has errors"
        return f"no finished stage there {what} (glmdata inspect {workdir} lists every stage's reasons)"
    return "; ".join(f"glmdata inspect {storage.join(workdir, name)} {flag}" for name in names)


def _print_fields(console: Console, row: dict, *keys: str) -> None:
    """One `key: value` line each, never wrapped: these are what the user copies."""
    for key in keys:
        if row.get(key) is not None:
            console.print(f"[bold]{key}[/bold]: {plain(row[key])}", highlight=False, soft_wrap=True)


def _show_errors(path: str, args: argparse.Namespace, console: Console) -> int:
    rows = sample_errors(path, args.n, args.seed)
    if not rows:
        console.print(f"{path}: no errors")
        return 0
    for row in rows:
        console.rule(plain(row.get("reason")), style="dim")
        _print_fields(console, {**row, "source_file": f"{row.get('source_file')} @ offset {row.get('source_offset')}"},
                      "source_file", "doc_id", "bytes")
        console.print(preview(row.get("message"), args.width), markup=False, highlight=False)
    return 0
