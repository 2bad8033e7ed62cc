"""`make demo` (python -m pipeline.demo): the whole pipeline on the synthetic demo corpus with Spark
local mode, then ~50 steps of the tiny GLM on CPU on the shards it wrote, then where the report is.

    1. python -m pipeline.demo_corpus --out work/demo-corpus     (deterministic synthetic crawl)
    2. glmdata run --config configs/demo.yaml                      (every stage, then the report)
    3. python -m trainer.train --config configs/trainer/tiny.yaml --data <shards> --device cpu

Stages that finished in an earlier demo are skipped; the training run starts fresh each time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "work" / "demo-corpus"
CONFIG = REPO / "configs" / "demo.yaml"
TRAINER_PRESET = REPO / "configs" / "trainer" / "tiny.yaml"


def shards_folder(workdir: Path) -> Path:
    for candidate in (workdir / "shards", workdir / "shards" / "data"):
        if (candidate / "manifest.json").exists():
            return candidate
    raise SystemExit(f"demo: no shards manifest under {workdir / 'shards'}: did the shards stage run?")


def losses(log_path: Path) -> list[tuple[int, float]]:
    out = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "loss" in rec and "step" in rec:
            out.append((rec["step"], rec["loss"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="training steps of the tiny GLM (default 50)")
    parser.add_argument("--engine", choices=["spark", "beam"], default="spark", help="pipeline engine")
    args = parser.parse_args(argv)
    console = Console()
    started = time.time()

    console.rule("1/3 demo corpus (synthetic: written by the project from its own text)")
    if CORPUS.is_dir() and any(CORPUS.iterdir()):
        # Rewriting it would change the files' mtimes and re-run every stage.
        console.print(f"{CORPUS} exists (delete it to regenerate)")
    else:
        subprocess.run([sys.executable, "-m", "pipeline.demo_corpus", "--out", str(CORPUS)], cwd=REPO, check=True)

    console.rule("2/3 glmdata run --config configs/demo.yaml")
    from pipeline.cli import main as glmdata
    from pipeline.stages import load_config

    if glmdata(["run", "--config", str(CONFIG), "--engine", args.engine]) != 0:
        return 1
    workdir = Path(load_config(CONFIG).run.workdir)

    console.rule(f"3/3 tiny GLM, {args.steps} steps on CPU")
    out = workdir / "train"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "trainer.train", "--config", str(TRAINER_PRESET), "--data", str(shards_folder(workdir)),
           "--out", str(out), "--device", "cpu", "--set", f"train.max_steps={args.steps}"]
    console.print(" ".join(cmd))
    subprocess.run(cmd, cwd=REPO, check=True)
    curve = losses(out / "log.jsonl")
    if curve:
        head = sum(loss for _, loss in curve[:5]) / len(curve[:5])
        tail = sum(loss for _, loss in curve[-5:]) / len(curve[-5:])
        verdict = "falling" if tail < head else "NOT falling"
        console.print(f"loss {verdict}: mean of steps {curve[0][0]}-{curve[min(4, len(curve) - 1)][0]} = {head:.3f}, "
                      f"of steps {curve[-min(5, len(curve))][0]}-{curve[-1][0]} = {tail:.3f}")

    console.rule("done")
    console.print(f"demo finished in {time.time() - started:.0f} s")
    console.print(f"HTML report: [bold]{workdir / 'report' / 'report.html'}[/bold]")
    console.print(f"stage outputs: {workdir}/<stage>/   training run: {out}/")
    console.print(next_steps(workdir), highlight=False, soft_wrap=True)
    return 0


def next_steps(workdir: Path) -> str:
    """The commands to look at the run with: `make setup` installs glmdata into the venv, not on PATH."""
    bin_dir = os.path.relpath(Path(sys.executable).parent)
    work = os.path.relpath(workdir)
    return (f"next: {bin_dir}/glmdata inspect {work}, {bin_dir}/glmdata report {work} "
            f"(or `source {bin_dir}/activate`, then glmdata ...)")


if __name__ == "__main__":
    sys.exit(main())
