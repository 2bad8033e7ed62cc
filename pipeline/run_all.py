"""`glmdata run --config X`: every stage in data-flow order with one engine session, then the report.

Stages whose `_SUCCESS` matches their config and input are skipped, so running again after a crash
or a kill resumes at the first unfinished stage (the runner commits each stage atomically).
"""
from __future__ import annotations

import argparse
import logging

from rich.console import Console

from pipeline import registry
from pipeline.cli import add_config_arguments, config_from_args
from pipeline.config import ConfigError, RunConfig, UsageError
from pipeline.registry import register_command
from pipeline.stage import Stage

log = logging.getLogger(__name__)


def pipeline_stages(first: str | None = None, last: str | None = None, order: list[str] | None = None) -> list[str]:
    """The registered stages of `order` (default STAGE_ORDER) from `first` to `last` inclusive."""
    from pipeline.stages import STAGE_ORDER

    names = [n for n in (order or STAGE_ORDER) if n in registry.STAGES]
    for bound, flag in ((first, "--from"), (last, "--until")):
        if bound is not None and bound not in names:
            raise UsageError(f"{flag} {bound}: not a stage; expected one of: {', '.join(names)}")
    start = names.index(first) if first else 0
    stop = names.index(last) + 1 if last else len(names)
    if start >= stop:
        raise UsageError(f"--from {first} comes after --until {last}")
    return names[start:stop]


def build_stages(cfg: RunConfig, first: str | None = None, last: str | None = None,
                 order: list[str] | None = None) -> list[Stage]:
    """The stage objects from `first` to `last`, every one built before the first runs: a stage checks
    the settings that span sections when it is built, so a bad one stops the run at its start, not hours in."""
    return [registry.STAGES[name](cfg) for name in pipeline_stages(first, last, order)]


def run_pipeline(cfg: RunConfig, engine, first: str | None = None, last: str | None = None,
                 report: bool = True, order: list[str] | None = None, console: Console | None = None) -> list[dict]:
    """Run the stages (skipping finished ones; re-running from `first` on when given), then the report.
    Returns each stage's stats.json content; a stage whose input is missing ends the run early
    (the report still covers what finished)."""
    from pipeline.report import read_stage_stats, write_report
    from pipeline.runner import hold_workdir
    from pipeline.stages import STAGE_ORDER

    console = console or Console()
    missing = [n for n in (order or STAGE_ORDER) if n not in registry.STAGES and n != "report"]
    if missing:
        console.print(f"[yellow]not available in this build, not run: {', '.join(missing)}[/yellow]")
    stages = build_stages(cfg, first, last, order)
    with hold_workdir(cfg.run.workdir, cfg.path):  # one lease for the whole run, not one per stage
        summaries = _run_stages(cfg, engine, stages, first, console)
        if report:
            console.rule("report")
            if read_stage_stats(cfg.run.workdir, required=()):
                write_report(cfg.run.workdir, engine, console)
            else:  # `--from dedup` on a new workdir: an empty page would read as a run that found nothing
                console.print(f"no report: no stage of {cfg.run.workdir} has finished")
    return summaries


def _run_stages(cfg: RunConfig, engine, stages: list[Stage], first: str | None, console: Console) -> list[dict]:
    from pipeline.report_terminal import print_stage_summary
    from pipeline.runner import StageNotReady, run_stage

    summaries = []
    for i, stage in enumerate(stages, 1):
        console.rule(f"[{i}/{len(stages)}] {stage.name}")
        try:
            summary = run_stage(stage, engine, force=first is not None)
        except (StageNotReady, ConfigError) as e:
            console.print(f"[red]stopped before {stage.name}: {e}[/red]")
            break
        print_stage_summary(summary, cfg.run.workdir, console)
        summaries.append(summary)
    return summaries


def _arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--from", dest="first", metavar="STAGE",
                   help="re-run from this stage on, even if finished (earlier stages must be finished)")
    p.add_argument("--until", dest="last", metavar="STAGE", help="stop after this stage")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")


@register_command("run", None, "run every stage in order (skipping finished ones), then the report", _arguments)
def run_command(args: argparse.Namespace) -> int:
    from pipeline.engines import make_engine

    cfg = config_from_args(args)
    engine = make_engine(cfg)
    try:
        summaries = run_pipeline(cfg, engine, args.first, args.last, report=not args.no_report)
    finally:
        engine.close()
    return 0 if len(summaries) == len(pipeline_stages(args.first, args.last)) else 1
