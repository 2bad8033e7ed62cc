"""The whole pipeline at 1x, 4x and 16x input (about 50, 200 and 800 MB of JSON lines): time and
peak memory per stage, and the per-core throughput docs/scaling.md builds the cluster estimate on.

    .venv/bin/python bench/scale.py                 # 1x 4x 16x
    .venv/bin/python bench/scale.py --scales 1 4    # when 16x would not finish in time
    .venv/bin/python bench/scale.py --mb 5 --scales 1 2   # a quick check of the script itself

The input is built from the real prose of ../shared/data (bench/dedup_quality.py's documents):
collages of real paragraphs as distinct documents, plus edited near-duplicate copies (sentences
deleted, paragraphs swapped, typos, boilerplate; the edits dedup_quality.py evaluates) and exact
copies, so dedup has real work at every scale. Each scale runs every stage of `glmdata run` in one
Spark local[2] session (the same code path as a cluster), while a sampler reads the resident memory
of the driver's Python process, its JVM, and the Python workers from /proc. The baseline of a
scale is the 1x run in the same invocation: time ratios are printed against it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dedup_quality import edit, load_documents  # noqa: E402

console = Console(width=160)
WORK = REPO / "work" / "bench-scale"
FILE_MB = 8  # one input file: a work unit of ingest
CORES = 2
NEAR_DUP_SHARE, EXACT_DUP_SHARE = 0.15, 0.05


# ---------------------------------------------------------------------------------------------
# Input


def collage(pool: list[str], rng: random.Random) -> str:
    """A distinct document: 3-8 real paragraphs drawn from different documents of one language."""
    return "\n".join(rng.choice(pool) for _ in range(rng.randint(3, 8)))


def build_input(folder: Path, megabytes: float, seed: int = 1234) -> Path:
    """JSON lines of ~`megabytes`, half English and half Chinese by bytes; cached by size."""
    marker = folder / "_DONE"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    docs = load_documents()
    rng = random.Random(seed)
    pools = {lang: [p for t in texts for p in t.split("\n") if len(p) >= (120 if lang == "en" else 40)]
             for lang, texts in docs.items()}
    target = megabytes * 1e6
    written, index, files, out, recent = 0, 0, 0, None, {"en": [], "zh": []}
    while written < target:
        if out is None or out.tell() > FILE_MB * 1e6:
            if out:
                out.close()
            out = open(folder / f"part-{files:04d}.jsonl", "w", encoding="utf-8")
            files += 1
        lang = "en" if rng.random() < 0.5 else "zh"
        roll = rng.random()
        if recent[lang] and roll < EXACT_DUP_SHARE:
            text = rng.choice(recent[lang])
        elif recent[lang] and roll < EXACT_DUP_SHARE + NEAR_DUP_SHARE:
            text = edit(rng.choice(recent[lang]), lang, docs[lang], rng)
        else:
            text = collage(pools[lang], rng)
            recent[lang] = (recent[lang] + [text])[-500:]
        line = json.dumps({"id": f"scale-{index}", "text": text, "url": f"https://bench.example/{lang}/{index}"},
                          ensure_ascii=False) + "\n"
        out.write(line)
        written += len(line.encode())
        index += 1
    out.close()
    marker.write_text(f"{index} documents, {written} bytes\n")
    return folder


def _absolute_paths(node, base: Path):
    """Relative paths of a config (they resolve against its folder) made absolute, so it can move."""
    if isinstance(node, dict):
        return {k: _absolute_paths(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute_paths(v, base) for v in node]
    if isinstance(node, str) and node.startswith(("./", "../")):
        return str((base / node).resolve())
    return node


def write_config(root: Path, inputs: Path, megabytes: float) -> Path:
    """configs/demo.yaml's stage settings on the bench input; the mix takes everything to a budget."""
    raw = _absolute_paths(yaml.safe_load((REPO / "configs" / "demo.yaml").read_text()), REPO / "configs")
    raw["run"] = {"workdir": str(root / "work"), "engine": "spark", "seed": 1234,
                  "spark": {"master": f"local[{CORES}]", "conf": {"spark.driver.memory": "4g"}}}
    raw["ingest"] = {"sources": [{"name": "bench", "format": "jsonl", "paths": [str(inputs / "*.jsonl")]}]}
    raw["mix"] = ({
        "sources": [{"name": "bench-en", "lang": "en", "match_source": ["*"]},
                    {"name": "bench-zh", "lang": "zh", "match_source": ["*"]}],
        # About what survives of the input, in tokens at the default bytes per token (en 4, zh 3).
        "target_tokens": int(megabytes * 1e6 * 0.5 / 3.5)})
    # Production sizes rather than the demo's toy ones: the tokenizer's default 32k vocabulary (8k
    # below 20 MB, where SentencePiece has too little text) and GLM-130B's 2048-token sequences.
    raw["tokenizer"] = {"vocab_size": 32000 if megabytes >= 20 else 8000}
    raw["shards"] = {}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Memory


TICK = os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, name, CPU seconds used so far, its reaped children's included)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(entry)] = (int(fields[1]), stat[stat.index("(") + 1:stat.rindex(")")],
                               sum(int(f) for f in fields[11:15]) / TICK)
    return out


def _tree(procs: dict, root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


class ResourceSampler:
    """Over a block: peak resident memory of the driver (this Python), its JVM and the sum of the
    Python workers, and the CPU seconds all of them used (core-seconds: what a cluster pays for,
    unlike wall time on a shared machine)."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peaks = {"driver_py": 0.0, "jvm": 0.0, "workers": 0.0}
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool = False) -> None:
        procs = _processes()
        sample = {"driver_py": 0.0, "jvm": 0.0, "workers": 0.0}
        for pid in _tree(procs, os.getpid()):
            if pid not in procs:
                continue
            cpu = procs[pid][2]
            self._cpu_first.setdefault(pid, cpu if first else 0.0)
            self._cpu_last[pid] = cpu
            key = "driver_py" if pid == os.getpid() else "jvm" if procs[pid][1] == "java" else "workers"
            sample[key] += _rss_mb(pid)
        for k, v in sample.items():
            self.peaks[k] = max(self.peaks[k], v)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_last[p] - self._cpu_first[p] for p in self._cpu_last)

    def __enter__(self):
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------------------------------------
# One scale


def run_scale(scale: int, megabytes: float) -> list[dict]:
    from pipeline import registry
    from pipeline.config import load_config
    from pipeline.engines.spark import SparkEngine
    from pipeline.report import write_report
    from pipeline.run_all import pipeline_stages
    from pipeline.runner import run_stage

    inputs = build_input(WORK / f"input-{megabytes * scale:g}mb", megabytes * scale)
    root = WORK / f"run-{megabytes * scale:g}mb"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = load_config(write_config(root, inputs, megabytes * scale))
    engine = SparkEngine(cfg)
    rows = []
    try:
        _ = engine.spark  # session start is not a stage's cost
        for name in pipeline_stages():
            with ResourceSampler() as mem:
                started = time.time()
                stats = run_stage(registry.STAGES[name](cfg), engine)
                wall = time.time() - started
            rows.append({"scale": scale, "stage": name, "seconds": wall,
                         "in_mb": (stats["in"]["bytes"] + stats["created"]["bytes"]) / 1e6,
                         "in_docs": stats["in"]["docs"] + stats["created"]["docs"],
                         "kept_docs": stats["kept"]["docs"], "cpu_seconds": mem.cpu_seconds,
                         **{f"peak_{k}_mb": v for k, v in mem.peaks.items()}})
            console.print(f"{scale}x {name}: {wall:.1f} s, {mem.cpu_seconds:.0f} CPU s, {rows[-1]['in_mb']:.1f} MB in, "
                          f"driver {mem.peaks['driver_py']:.0f} MB, JVM {mem.peaks['jvm']:.0f} MB")
        with ResourceSampler() as mem:
            started = time.time()
            write_report(cfg.run.workdir, engine, Console(file=open(os.devnull, "w")))
            rows.append({"scale": scale, "stage": "report", "seconds": time.time() - started,
                         "in_mb": rows[0]["in_mb"], "in_docs": rows[0]["in_docs"], "kept_docs": 0,
                         "cpu_seconds": mem.cpu_seconds, **{f"peak_{k}_mb": v for k, v in mem.peaks.items()}})
    finally:
        engine.close()
    return rows


def print_table(rows: list[dict]) -> None:
    scales = sorted({r["scale"] for r in rows})
    base = {r["stage"]: r for r in rows if r["scale"] == scales[0]}
    table = Table(title=f"pipeline at {', '.join(f'{s}x' for s in scales)} (Spark local[{CORES}])")
    for col in ("scale", "stage", "MB in", "seconds", f"time / {scales[0]}x", "CPU s", "MB per CPU s",
                "driver Python MB", "JVM MB", "Python workers MB"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in rows:
        b = base.get(r["stage"])
        table.add_row(f"{r['scale']}x", r["stage"], f"{r['in_mb']:.1f}", f"{r['seconds']:.1f}",
                      f"{r['seconds'] / b['seconds']:.2f}" if b and b["seconds"] else "",
                      f"{r['cpu_seconds']:.0f}", f"{r['in_mb'] / r['cpu_seconds']:.2f}" if r["cpu_seconds"] else "",
                      f"{r['peak_driver_py_mb']:.0f}", f"{r['peak_jvm_mb']:.0f}", f"{r['peak_workers_mb']:.0f}")
    console.print(table)
    for s in scales[1:]:
        total = sum(r["seconds"] for r in rows if r["scale"] == s)
        total0 = sum(r["seconds"] for r in rows if r["scale"] == scales[0])
        console.print(f"{s}x: {total:.0f} s in all = {total / total0:.2f} x the {scales[0]}x time "
                      f"(input {s / scales[0]:g}x)")


# ---------------------------------------------------------------------------------------------
# The GLM-130B-sized job, from the measured CPU seconds

INPUT_MB = 2.45e6  # 1.2 TB Pile + 1.0 TB WuDao + 0.25 TB Chinese web (GLM-130B)
OUTPUT_TOKENS = 400e9
HEADROOM = 1.25  # stragglers, retries, executor start-up: cluster vCPUs busy ~80% of a run
NODE_VCPUS = 16
# On-demand list prices per node-hour (16 vCPU, 64 GB), with their source. Dataproc bills its fee
# per vCPU-hour on top of Compute Engine; EMR bills its fee per instance-hour on top of EC2.
PRICES = {
    "Dataproc (n2-standard-16, us-central1)": {"vm": 0.776944, "fee": 0.010 * NODE_VCPUS},
    "EMR on EC2 (m6i.4xlarge, us-east-1)": {"vm": 0.768, "fee": 0.192},
}
TOKEN_STAGES = ("encode", "shards")  # their work follows the output tokens, not the raw input


def shard_tokens(megabytes: float) -> float:
    stats = WORK / f"run-{megabytes:g}mb" / "work" / "shards" / "stats.json"
    return float(json.loads(stats.read_text())["report"]["tokens"])


def estimate(rows: list[dict], megabytes: float) -> None:
    """Core-hours per stage for 2.45 TB in / 400B tokens out, from the largest measured scale."""
    scale = max(r["scale"] for r in rows)
    run = [r for r in rows if r["scale"] == scale and r["stage"] != "tokenizer"]
    raw_mb = run[0]["in_mb"]
    tokens = shard_tokens(megabytes * scale)
    rates, hours = {}, {}
    for r in run:
        if r["stage"] in TOKEN_STAGES:
            per = r["cpu_seconds"] / (tokens / 1e6)
            rates[r["stage"]] = f"{per:.3f} CPU s per 1M tokens"
            hours[r["stage"]] = per * OUTPUT_TOKENS / 1e6 / 3600 * HEADROOM
        else:
            per = r["cpu_seconds"] / raw_mb
            rates[r["stage"]] = f"{per:.3f} CPU s per input MB"
            hours[r["stage"]] = per * INPUT_MB / 3600 * HEADROOM
    total = sum(hours.values())
    table = Table(title=f"GLM-130B-sized job from the {scale}x run ({raw_mb:.0f} MB in, {tokens / 1e6:.1f}M tokens "
                        f"out), x{HEADROOM} headroom")
    for col in ("stage", "measured CPU s", "rate", "core-hours", "share"):
        table.add_column(col, justify="left" if col in ("stage", "rate") else "right")
    for r in run:
        table.add_row(r["stage"], f"{r['cpu_seconds']:.0f}", rates[r["stage"]], f"{hours[r['stage']]:,.0f}",
                      f"{hours[r['stage']] / total:.0%}")
    console.print(table)
    nodes = math.ceil(total / 24 / NODE_VCPUS)
    console.print(f"total {total:,.0f} core-hours; a 24-hour run needs {total / 24:,.0f} vCPUs = {nodes} nodes "
                  f"of {NODE_VCPUS} vCPUs (+1 master)")
    for name, p in PRICES.items():
        per_hour = p["vm"] + p["fee"]
        console.print(f"{name}: ${per_hour:.3f}/node-hour x {nodes + 1} nodes x 24 h = ${(nodes + 1) * 24 * per_hour:,.0f}")
    tok = next(r for r in rows if r["scale"] == scale and r["stage"] == "tokenizer")
    console.print(f"tokenizer (driver, bounded sample): {tok['seconds']:.0f} s wall, {tok['cpu_seconds']:.0f} CPU s "
                  f"for {tok['in_mb']:.0f} MB of mix documents")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--mb", type=float, default=50, help="input size at 1x in MB (default 50)")
    parser.add_argument("--estimate-only", metavar="RESULTS_JSON",
                        help="print the tables and the GLM-130B estimate from an earlier run's results.json")
    args = parser.parse_args()
    if args.estimate_only:
        rows = json.loads(Path(args.estimate_only).read_text())
        print_table(rows)
        estimate(rows, args.mb)
        return 0
    rows = []
    for scale in args.scales:
        rows += run_scale(scale, args.mb)
        (WORK / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)
    estimate(rows, args.mb)
    console.print(f"results: {WORK / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
