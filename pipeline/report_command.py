"""`glmdata report <workdir> [--compare B] [--out DIR]`: the command around pipeline/report.py and
pipeline/report_compare.py. An engine starts only when one is needed (a --compare join, or a workdir
written before stages recorded profiles). Writing into <workdir>/report takes the workdir's lease, as a
run does, so a report never races the run that holds it; --out writes elsewhere and needs no lease."""
from __future__ import annotations

import argparse
import contextlib

from pipeline import storage
from pipeline.config import UsageError
from pipeline.registry import register_command
from pipeline.report import collect, read_stage_stats, run_engine, write_collected
from pipeline.report_compare import write_comparison
from pipeline.runner import WorkdirBusy, hold_workdir


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", help="the run's workdir (run.workdir of its config): local, gs:// or s3://")
    p.add_argument("--compare", metavar="WORKDIR_B",
                   help="set another run beside this one (e.g. after changing a threshold): changes per stage, "
                        "source, language and reason, and the documents that moved between kept and rejected; "
                        "writes <workdir>/report/compare.{html,json}")
    p.add_argument("--engine", choices=["spark", "beam"],
                   help="engine for --compare's id join and for workdirs written before stages recorded "
                        "profiles (default: the engine the run used); a plain report of a new run starts none")
    p.add_argument("--master", default="local[*]", help="Spark master when Spark is used (default local[*])")
    p.add_argument("--out", metavar="DIR",
                   help="write the pages here instead of <workdir>/report (works while a run holds the workdir: "
                        "a report of the stages finished so far)")


def _local(path: str) -> str:
    return path if "://" in path else storage.filesystem(path)[1]


class LazyEngine:
    """Starts the engine on first request only; closes it if it was started."""

    def __init__(self, workdir: str, name: str, master: str):
        self.workdir, self.name, self.master, self.engine = workdir, name, master, None

    def __call__(self):
        if self.engine is None:
            from pipeline.config import RunConfig, RunSection, SparkOptions
            from pipeline.engines import make_engine

            cfg = RunConfig(path="<report>", run=RunSection(workdir=self.workdir, engine=self.name,
                                                             spark=SparkOptions(master=self.master)),
                            sections={}, raw={})
            self.engine = make_engine(cfg)
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


@register_command("report", None, "summarise a run from what its stages recorded: terminal table and one "
                  "self-contained HTML page; --compare B sets another run beside it", _arguments)
def report_command(args: argparse.Namespace) -> int:
    workdir = _local(args.workdir)
    stages = {}
    compare = _local(args.compare) if args.compare else None
    for folder in [workdir] + ([compare] if compare else []):
        if not storage.is_dir(folder):
            raise UsageError(f"{folder} is not a folder (expected a run's workdir)")
        stages[folder] = read_stage_stats(folder)
        if not stages[folder]:  # else an empty report, or a comparison claiming nothing changed
            if storage.exists(storage.join(folder, "stats.json")):  # work/demo/quality for work/demo
                raise UsageError(f"{folder} is one stage's folder: report its run, glmdata report "
                                 f"{folder.rstrip('/').rpartition('/')[0]}")
            raise UsageError(f"{folder} has no finished stage (no <stage>/stats.json): not a run's workdir?")
    out = _local(args.out) if args.out else storage.join(workdir, "report")
    engine = LazyEngine(workdir, args.engine or run_engine(stages[workdir]), args.master)
    with contextlib.ExitStack() as held:
        if not args.out:  # writing into the workdir: its lease, as a run holds it
            try:
                held.enter_context(hold_workdir(workdir))
            except WorkdirBusy as e:
                raise WorkdirBusy(f"{workdir} is in use by {e.holder}, which writes its report when it finishes. "
                                  f"For the stages finished so far: glmdata report {args.workdir} --out DIR, or "
                                  f"glmdata inspect {args.workdir}", e.holder) from None
        held.callback(engine.close)
        collected = collect(workdir, engine, stages[workdir])
        write_collected(collected, out)
        if compare:
            write_comparison(collected, collect(compare, stages=stages[compare]), engine, out=out)
    return 0
