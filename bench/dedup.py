"""Dedup performance: MinHash signatures vs datasketch, the stage end to end vs datatrove, driver memory.

    .venv/bin/python bench/dedup.py signatures            # per core, same documents, same run
    .venv/bin/python bench/dedup.py e2e --mb 200          # Spark local[2] stage vs datatrove, 2 workers each
    .venv/bin/python bench/dedup.py memory --mb 12.5      # the stage at 1x, 4x, 16x: peak driver RSS
    .venv/bin/python bench/dedup.py star --copies 100000  # one page copied 100,000 times: one star cluster
    .venv/bin/python bench/dedup.py incremental --mb 50   # new 0.25x against a 1x index vs a full 1.25x rerun
    .venv/bin/python bench/dedup.py rerun --mb 12.5       # a snapshot re-run against its own index vs fresh

`signatures` times, on one core, (a) the signature step from normalized tokens: ours (vectorised
shingle hashing + permutations) against building the shingle strings and datasketch's
`MinHash.update_batch` with its defaults (sha1_hash32, 128 permutations); (b) the same from raw
text, where both pay the same normalization (`filters.fast_normalize`); and (c) that
normalization alone against the regex/OpenCC reference it reproduces byte for byte.

`e2e` builds English text derived from the real prose in ../shared/data (edited copies of real
documents as in dedup_quality.py, exact copies, and collages of real paragraphs as unrelated
documents), cached under /tmp, and runs the whole dedup stage twice, (a) doing the same work as
datatrove (exact + MinHash-LSH with verification, components, survivor choice, the final write;
URL dedup, paragraph dedup and the index append off: datatrove's steps do none of them) and (b)
with its defaults (all three on), and datatrove's four-step MinHash pipeline (signatures, buckets,
clustering, filtering; FineWeb's 14 x 8 on word 5-grams) on the same Parquet input; it prints wall and CPU seconds (all processes of
each side) with both ratios for (a) and (b), the load average, and each run's phases (wall,
driver/JVM/Python-worker CPU, Spark jobs).

`incremental` builds 1.25x of that text, deduplicates the first 1x (its survivors go to a dedup
index), then runs the remaining 0.25x against the index and a full rerun of all 1.25x, in the same
invocation, and prints the ratios of wall and CPU seconds (driver, JVM and Python workers), each
phase's figures and Spark jobs, the index bytes the incremental run read, and how the kept sets
differ (a new document that links two indexed clusters keeps both survivors).

`rerun` deduplicates one snapshot of that text three times, Spark, paragraph dedup off: fresh, into
an empty index X (`index: X, against: [X]`); again with a new input fingerprint (an upstream
change), which replaces and retires every row the first run indexed; and against X appending
nowhere (`index: null`), which replaces them and retires nothing. It prints CPU seconds (driver,
JVM and Python workers) of each run and of its clustering call, and each re-run's ratio to the
fresh run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dedup_quality import edit, load_documents  # noqa: E402
from filters.fast_normalize import (normalize_chinese, normalize_words, reference_chinese,  # noqa: E402
                                    reference_words)
from filters.minhash import MinHasher, Shingling, shingle_batch  # noqa: E402
from pipeline.schema import text_bytes  # noqa: E402

console = Console(width=170)
CACHE = Path(os.environ.get("GLMDATA_BENCH_CACHE", "/tmp/glmdata-bench-dedup"))
PART_MB = 12.5  # size of one input part: 1x = 1 part, 16x = 16 parts

# ---------------------------------------------------------------------------------------------
# signatures


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def bench_signatures() -> None:
    from datasketch import MinHash

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    docs = load_documents()
    table = Table(title="MinHash signatures, one core, 128 permutations (best of 3)")
    for col in ("documents", "step", "ours docs/s", "ours MB/s", "datasketch docs/s", "datasketch MB/s", "ratio"):
        table.add_column(col)
    for lang, shingling in (("en", Shingling()), ("zh", Shingling(zh_tokens="char")), ("zh", Shingling(zh_tokens="word"))):
        texts = docs[lang]
        langs = [lang] * len(texts)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        hasher = MinHasher(128, 1, shingling)
        n = shingling.ngram(lang)
        tokens = [shingling.token_string(t, lang) for t in texts]
        word_mode = tokens[0][1]
        sep = " " if word_mode else ""

        def ours_from_tokens():
            for i in range(0, len(tokens), 256):
                batch = shingle_batch([t for t, _ in tokens[i:i + 256]], word_mode, n)
                hasher.signatures_of(batch)

        def datasketch_from_tokens():
            for tok, _ in tokens:
                parts = [p for p in (tok.split(" ") if word_mode else tok) if p]
                grams = [sep.join(parts[k:k + n]) for k in range(max(1, len(parts) - n + 1))] if parts else []
                m = MinHash()
                m.update_batch([g.encode("utf-8") for g in grams])

        def ours_from_text():
            for i in range(0, len(texts), 256):
                hasher.signatures(texts[i:i + 256], langs[i:i + 256])

        def datasketch_from_text():
            for t in texts:
                m = MinHash()
                m.update_batch([s.encode("utf-8") for s in shingling.shingles(t, lang)])

        name = f"{lang} {'word' if word_mode else 'char'} {n}-grams ({len(texts)} docs, {mb:.1f} MB)"
        for step, ours, theirs in (("from tokens", ours_from_tokens, datasketch_from_tokens),
                                   ("from raw text", ours_from_text, datasketch_from_text)):
            t_ours, t_ds = _time(ours), _time(theirs, repeat=1 if "text" in step else 2)
            table.add_row(name, step, f"{len(texts) / t_ours:,.0f}", f"{mb / t_ours:.2f}",
                          f"{len(texts) / t_ds:,.0f}", f"{mb / t_ds:.2f}", f"{t_ds / t_ours:.1f}x")
    console.print(table)
    bench_normalization(docs)


def bench_normalization(docs: dict[str, list[str]]) -> None:
    """The compiled normalization against the regex/OpenCC reference, on the same documents."""
    table = Table(title="normalization, one core: compiled pass vs regex/OpenCC reference (best of 3)")
    for col in ("documents", "ours MB/s", "reference MB/s", "ratio"):
        table.add_column(col)
    for lang, fast, reference in (("en", normalize_words, reference_words), ("zh", normalize_chinese, reference_chinese)):
        texts = docs[lang]
        mb = sum(len(t.encode()) for t in texts) / 1e6
        t_ours = _time(lambda: [fast(t) for t in texts])
        t_ref = _time(lambda: [reference(t) for t in texts])
        table.add_row(f"{lang} ({len(texts)} docs, {mb:.1f} MB)", f"{mb / t_ours:.2f}", f"{mb / t_ref:.2f}",
                      f"{t_ref / t_ours:.1f}x")
    console.print(table)


# ---------------------------------------------------------------------------------------------
# real-derived input


def _collage(paragraphs: list[str], rng: random.Random) -> str:
    return "\n".join(rng.choice(paragraphs) for _ in range(rng.randint(4, 12)))


def derived_input(mb: float, seed: int = 0) -> Path:
    """English Parquet parts of ~PART_MB each, derived from the real prose; cached."""
    n_parts = max(1, round(mb / PART_MB))
    out = CACHE / f"input-{n_parts}x{PART_MB}"
    if (out / "_SUCCESS").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    base = load_documents()["en"]
    paragraphs = [p for t in base for p in t.split("\n") if len(p) > 200]
    rng = random.Random(seed)
    with console.status(f"building {n_parts * PART_MB:.0f} MB of real-derived English text under {out}"):
        doc = 0
        for part in range(n_parts):
            rows, size = [], 0
            while size < PART_MB * 1e6:
                roll = rng.random()
                src = rng.randrange(len(base))
                text = (base[src] if roll < 0.1 else edit(base[src], "en", base, rng) if roll < 0.5
                        else _collage(paragraphs, rng))
                rows.append({"id": f"d{doc:08d}", "text": text, "url": f"https://example.org/{src}/{doc}",
                             "source": "bench", "source_file": f"part-{part}", "source_offset": len(rows),
                             "lang": "en", "q_score": rng.random()})
                size += len(text.encode())
                doc += 1
            pq.write_table(pa.Table.from_pylist(rows), out / "data" / f"part-{part:05d}.parquet", compression="zstd")
    (out / "_SUCCESS").write_text(json.dumps({"config_hash": "bench", "input_fingerprint": f"{n_parts}"}))
    return out


def input_mb(upstream: Path) -> float:
    return sum(text_bytes(pq.read_table(f, columns=["text"]).column("text"))
               for f in (upstream / "data").glob("*.parquet")) / 1e6


# ---------------------------------------------------------------------------------------------
# the stage, in a child process (for its own peak RSS)


def _peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _java_children() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"java" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu() -> dict[str, float]:
    """CPU seconds so far of this process (the driver), its JVM, and the JVM's descendants (Spark's
    Python workers, with the workers they have reaped)."""
    procs = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                procs[int(p.name)] = (int(fields[1]), [int(x) / _TICK for x in fields[11:15]])
            except (OSError, ValueError, IndexError):
                continue
    me = os.getpid()
    out = {"driver": sum(procs[me][1][:2]), "jvm": 0.0, "workers": 0.0}
    jvms = set(_java_children())
    for pid, (ppid, (utime, stime, cutime, cstime)) in procs.items():
        if pid in jvms:
            out["jvm"] += utime + stime
            out["workers"] += cutime + cstime  # Python workers (or daemons) that exited and the JVM reaped
            continue
        while ppid in procs and ppid not in jvms and ppid != me:
            ppid = procs[ppid][0]
        if ppid in jvms:
            out["workers"] += utime + stime + cutime + cstime
    return out


class PhaseProfile:
    """Wall and CPU seconds (driver, JVM, Python workers) and Spark jobs of each phase of a stage run:
    wraps the engine's map passes and the clustering call."""

    MAP_PHASES = {"dedup signatures": "signatures", "dedup index keys": "index probe", "dedup index probe": "index probe",
                  "dedup index fetch": "index probe", "dedup write": "write"}

    def __init__(self, spark):
        self.tracker = spark.sparkContext.statusTracker()
        self.phases: dict[str, dict[str, float]] = {}

    def snapshot(self) -> dict[str, float]:
        return {"wall": time.perf_counter(), "jobs": len(self.tracker.getJobIdsForGroup()), **_process_cpu()}

    def wrap(self, fn, phase_of):
        def timed(*args, **kwargs):
            before = self.snapshot()
            try:
                return fn(*args, **kwargs)
            finally:
                after = self.snapshot()
                phase = self.phases.setdefault(phase_of(*args), dict.fromkeys(before, 0.0))
                for k in before:
                    phase[k] += after[k] - before[k]
        return timed

    def install(self, engine) -> None:
        from pipeline.dedup import spark_dedup

        engine.map_units = self.wrap(engine.map_units, lambda label, *_: self.MAP_PHASES.get(label, label))
        spark_dedup.assignments = self.wrap(spark_dedup.assignments, lambda *_: "clustering")
        spark_dedup.paragraph_removals = self.wrap(spark_dedup.paragraph_removals, lambda *_: "paragraphs")


def run_stage_once(upstream: Path, workdir: Path, cores: int, parts: list[str] | None = None,
                   dedup: dict | None = None, phases: bool = False, fingerprint: str | None = None) -> dict:
    """The dedup stage on `upstream` (or only its `parts`, by file name) with the `dedup` section;
    with `phases`, per-phase wall, CPU and Spark jobs too (PhaseProfile). The upstream's input
    fingerprint is `fingerprint` (default: the parts): another one makes a re-run of the same data."""
    from pipeline.stages import load_config
    from pipeline.engines.spark import SparkEngine
    from pipeline.runner import run_stage
    from pipeline.stages.dedup import DedupStage

    stage_input = workdir / DedupStage.upstream
    (stage_input / "data").mkdir(parents=True, exist_ok=True)
    for f in sorted((upstream / "data").glob("*.parquet")):
        if parts is None or f.name in parts:
            os.symlink(f, stage_input / "data" / f.name)
    (stage_input / "_SUCCESS").write_text(json.dumps({"config_hash": "bench",
                                                      "input_fingerprint": fingerprint or json.dumps(parts)}))
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({"run": {"workdir": str(workdir), "spark": {"master": f"local[{cores}]"}},
                                        "dedup": dedup or {}}))
    cfg = load_config(cfg_path)
    engine = SparkEngine(cfg)
    engine.spark  # started before the clock, as on a cluster
    profile = PhaseProfile(engine.spark) if phases else None
    if profile:
        profile.install(engine)
        start = profile.snapshot()
    started = time.perf_counter()
    stats = run_stage(DedupStage(cfg), engine, force=True)
    seconds = time.perf_counter() - started
    if profile:
        end = profile.snapshot()
        total = {k: end[k] - start[k] for k in start}
        profile.phases["other"] = {k: total[k] - sum(p[k] for p in profile.phases.values()) for k in total}
        profile.phases["total"] = total
    jvm = max((_peak_rss_mb(pid) for pid in _java_children()), default=float("nan"))
    engine.close()
    return {"seconds": seconds, "driver_peak_rss_mb": _peak_rss_mb(), "jvm_peak_rss_mb": jvm,
            "kept": stats["kept"]["docs"], "dropped": {k: v["docs"] for k, v in stats["dropped"].items()},
            "in": stats["in"]["docs"], "extra": stats["extra"], **({"phases": profile.phases} if profile else {})}


def stage_in_child(upstream: Path, cores: int, workdir: Path | None = None, **options) -> dict:
    """run_stage_once in a child process (in a temporary workdir unless one is given)."""
    with tempfile.TemporaryDirectory(prefix="dedup-bench-", dir=CACHE) as tmp:
        out = subprocess.run([sys.executable, __file__, "_stage", str(upstream), str(workdir or tmp), str(cores),
                              json.dumps(options)], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr[-4000:])
        return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# datatrove


def run_datatrove(upstream: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig()  # FineWeb: 14 buckets x 8 hashes, word 5-grams
    tasks = len(list((upstream / "data").glob("*.parquet")))
    with tempfile.TemporaryDirectory(prefix="datatrove-", dir=CACHE) as tmp:
        def reader():
            return ParquetReader(str(upstream / "data"), glob_pattern="*.parquet", text_key="text", id_key="id")

        steps = [
            ([reader(), MinhashDedupSignature(f"{tmp}/signatures", config=config)], tasks),
            ([MinhashDedupBuckets(f"{tmp}/signatures", f"{tmp}/buckets", config=config)], config.num_buckets),
            ([MinhashDedupCluster(f"{tmp}/buckets", f"{tmp}/remove_ids", config=config)], 1),
            ([reader(), MinhashDedupFilter(f"{tmp}/remove_ids", exclusion_writer=ParquetWriter(f"{tmp}/removed")),
              ParquetWriter(f"{tmp}/output")], tasks),
        ]
        started, own_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        with DescendantCpu() as workers_cpu:
            for i, (pipeline, n_tasks) in enumerate(steps):
                LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=min(workers, n_tasks),
                                      logging_dir=f"{tmp}/logs/{i}", skip_completed=False).run()
        own = resource.getrusage(resource.RUSAGE_SELF)
        seconds = time.perf_counter() - started
        cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime + workers_cpu.seconds
        kept = sum(pq.read_metadata(f).num_rows for f in Path(f"{tmp}/output").glob("*.parquet"))
    return {"seconds": seconds, "cpu": cpu, "kept": kept}


class DescendantCpu:
    """CPU seconds of this process's descendants (datatrove's worker processes), read from /proc
    every 0.1 s while the block runs, each process's last reading summed: pool workers are not
    always reaped by this process, so RUSAGE_CHILDREN misses them (it read under 1 s for minutes
    of work). Undercounts each process by at most its last 0.1 s."""

    def __init__(self):
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.1):
            parents, cpu = {}, {}
            for p in Path("/proc").iterdir():
                if p.name.isdigit():
                    try:
                        fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                        parents[int(p.name)] = int(fields[1])
                        cpu[int(p.name)] = (int(fields[11]) + int(fields[12])) / _TICK
                    except (OSError, ValueError, IndexError):
                        continue
            for pid, ppid in parents.items():
                while ppid in parents and ppid != me:
                    ppid = parents[ppid]
                if ppid == me:
                    self.last[pid] = cpu[pid]

    def __enter__(self) -> "DescendantCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last.values())


# The same work as datatrove's four steps: MinHash near-duplicate clustering and filtering (exact keys
# and the verification stay: they are part of our clustering), without what datatrove does not do at
# all: URL dedup (its minhash steps never read the URL), paragraph dedup and the dedup index append.
LIKE_FOR_LIKE = {"url": False, "paragraphs": {"enabled": False}, "index": None}


def bench_e2e(mb: float, cores: int) -> None:
    upstream = derived_input(mb)
    size = input_mb(upstream)
    loads = [os.getloadavg()[0]]
    runs = {}
    for name, dedup in (("glmdata dedup stage, same work as datatrove (no URL dedup, no paragraph dedup, no index append)",
                         LIKE_FOR_LIKE), ("glmdata dedup stage, defaults (+ paragraph dedup, index append)", None)):
        r = stage_in_child(upstream, cores, dedup=dedup, phases=True)
        r["cpu"] = sum(r["phases"]["total"][k] for k in ("driver", "jvm", "workers"))
        console.print(f"{name}: {json.dumps(r)}")
        runs[name] = r
        loads.append(os.getloadavg()[0])
    theirs = run_datatrove(upstream, cores)
    console.print(f"datatrove minhash: {json.dumps(theirs)}")
    loads.append(os.getloadavg()[0])
    table = Table(title=f"dedup end to end, {size:.0f} MB of real-derived English text, {cores} cores, "
                        f"load average (1 min) {' / '.join(f'{x:.1f}' for x in loads)} at start / between runs / end")
    for col in ("pipeline", "wall s", "MB/s", "CPU s (all processes)", "kept docs", "dropped docs",
                "wall ratio", "CPU ratio"):
        table.add_column(col)
    for name, r in runs.items():
        table.add_row(name, f"{r['seconds']:.1f}", f"{size / r['seconds']:.2f}", f"{r['cpu']:.1f}", str(r["kept"]),
                      ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())),
                      f"{theirs['seconds'] / r['seconds']:.1f}x", f"{theirs['cpu'] / r['cpu']:.1f}x")
    table.add_row("datatrove MinHash (4 steps)", f"{theirs['seconds']:.1f}", f"{size / theirs['seconds']:.2f}",
                  f"{theirs['cpu']:.1f}", str(theirs["kept"]), "-", "1.0x", "1.0x")
    console.print(table)
    for name, r in runs.items():
        phases = Table(title=f"{name} per phase: wall and CPU seconds (driver, JVM, Python workers), Spark jobs")
        for col in ("phase", "wall s", "driver CPU s", "JVM CPU s", "workers CPU s", "jobs"):
            phases.add_column(col)
        for phase, v in r["phases"].items():
            phases.add_row(phase, f"{v['wall']:.1f}", f"{v['driver']:.1f}", f"{v['jvm']:.1f}", f"{v['workers']:.1f}",
                           f"{v['jobs']:.0f}")
        console.print(phases)


def star_input(copies: int, seed: int = 0) -> Path:
    """One real news article (first 600 characters) copied `copies` times: half exact copies, half
    with one random word appended (near copies, so LSH buckets hold them all); cached."""
    out = CACHE / f"star-{copies}"
    if (out / "_SUCCESS").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    page = next(t for t in load_documents()["en"] if len(t) > 2000)[:600]
    rng = random.Random(seed)
    per_part = -(-copies // 8)
    for part in range(8):
        rows = []
        for i in range(part * per_part, min(copies, (part + 1) * per_part)):
            text = page if i % 2 else f"{page} {''.join(rng.choice('abcdefghij') for _ in range(8))}"
            rows.append({"id": f"s{i:07d}", "text": text, "url": None, "source": "bench", "source_file": f"part-{part}",
                         "source_offset": len(rows), "lang": "en", "q_score": 0.0})
        pq.write_table(pa.Table.from_pylist(rows), out / "data" / f"part-{part:05d}.parquet", compression="zstd")
    (out / "_SUCCESS").write_text(json.dumps({"config_hash": "bench", "input_fingerprint": f"star{copies}"}))
    return out


def bench_star(copies: int, cores: int) -> None:
    r = stage_in_child(star_input(copies), cores)
    console.print(f"star of {copies:,} copies: {json.dumps(r)}")
    if r["kept"] != 1 or sum(r["dropped"].values()) != copies - 1:
        raise SystemExit(f"expected one survivor and {copies - 1} duplicates, got {r['kept']} kept, {r['dropped']}")
    console.print(f"one cluster of {copies:,}: {r['seconds']:.1f} s, {r['extra']['candidate_edges']:,} candidate edges, "
                  f"{r['extra']['cc_rounds']} component rounds, driver peak RSS {r['driver_peak_rss_mb']:.0f} MB, "
                  f"JVM peak RSS {r['jvm_peak_rss_mb']:.0f} MB")


def bench_memory(mb: float, cores: int) -> None:
    table = Table(title="dedup stage: peak RSS as the input grows (Spark local mode)")
    for col in ("input", "MB", "docs", "seconds", "driver (Python) peak RSS MB", "JVM peak RSS MB"):
        table.add_column(col)
    for factor in (1, 4, 16):
        upstream = derived_input(mb * factor)
        r = stage_in_child(upstream, cores)
        table.add_row(f"{factor}x", f"{input_mb(upstream):.0f}", str(r["in"]), f"{r['seconds']:.1f}",
                      f"{r['driver_peak_rss_mb']:.0f}", f"{r['jvm_peak_rss_mb']:.0f}")
        console.print(f"{factor}x: {json.dumps(r)}")
    console.print(table)


def kept_ids(workdir: Path) -> set[str]:
    return {i for f in (workdir / "dedup" / "data").glob("*.parquet") for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()}


def _dir_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in folder.rglob(pattern) if f.is_file())


def bench_incremental(mb: float, cores: int) -> None:
    """1x indexed, then 0.25x against the index vs all 1.25x again (four input parts : one)."""
    upstream = derived_input(mb * 1.25)
    files = sorted(f.name for f in (upstream / "data").glob("*.parquet"))
    if len(files) < 5 or len(files) % 5:
        raise SystemExit(f"--mb {mb}: 1.25x must make a multiple of 5 parts of {PART_MB} MB (e.g. --mb 50)")
    old, new = files[:len(files) * 4 // 5], files[len(files) * 4 // 5:]
    size = {name: input_mb(upstream) * len(part) / len(files) for name, part in (("old", old), ("new", new))}
    # the old data first, as "old wins" does: q_score ties and the crawl is the same, so ids decide
    order = {"survivor_order": ["id"], "paragraphs": {"enabled": False}}  # paragraph counts are per run
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dedup-incremental-", dir=CACHE) as tmp:
        root = Path(tmp)
        first = stage_in_child(upstream, cores, root / "old", parts=old, dedup=order, phases=True)
        index = root / "old" / "dedup_index"
        index_bytes, key_bytes = _dir_bytes(index / "runs"), _dir_bytes(index / "runs", "keys/*.parquet")
        inc = stage_in_child(upstream, cores, root / "new", parts=new, dedup={**order, "against": [str(index)]},
                             phases=True)
        full = stage_in_child(upstream, cores, root / "full", parts=files, dedup=order, phases=True)
        split, together = kept_ids(root / "old") | kept_ids(root / "new"), kept_ids(root / "full")
    load = max(load, os.getloadavg()[0])
    runs = (("first run (1x), survivors indexed", size["old"], first), ("new data (0.25x) against the index",
            size["new"], inc), ("full rerun (1.25x)", size["old"] + size["new"], full))
    for name, _, r in runs:
        console.print(f"{name}: {json.dumps(r)}")
    cpu = {id(r): sum(r["phases"]["total"][k] for k in ("driver", "jvm", "workers")) for _, _, r in runs}
    table = Table(title=f"incremental dedup: {size['new']:.0f} MB new against an index of {size['old']:.0f} MB, "
                        f"Spark local[{cores}], load average up to {load:.1f}")
    for col in ("run", "input MB", "wall s", "CPU s (all processes)", "Spark jobs", "kept docs"):
        table.add_column(col)
    for name, mb_in, r in runs:
        table.add_row(name, f"{mb_in:.0f}", f"{r['seconds']:.1f}", f"{cpu[id(r)]:.1f}",
                      f"{r['phases']['total']['jobs']:.0f}", str(r["kept"]))
    console.print(table)
    phases = Table(title="per phase: wall and CPU seconds (driver, JVM, Python workers), Spark jobs")
    for col in ("run", "phase", "wall s", "driver CPU s", "JVM CPU s", "workers CPU s", "jobs"):
        phases.add_column(col)
    for name, _, r in runs[1:]:
        for phase, v in r["phases"].items():
            phases.add_row(name, phase, f"{v['wall']:.1f}", f"{v['driver']:.1f}", f"{v['jvm']:.1f}",
                           f"{v['workers']:.1f}", f"{v['jobs']:.0f}")
    console.print(phases)
    console.print(f"index: {index_bytes / 1e6:.1f} MB on disk ({key_bytes / 1e6:.1f} MB of it key files); the "
                  f"incremental run read {inc['extra']['index_bytes_read'] / 1e6:.1f} MB of it and found "
                  f"{inc['extra']['existing_matches']} indexed documents sharing a key with the new data")
    console.print(f"incremental / full rerun: wall {inc['seconds'] / full['seconds']:.2f}, "
                  f"CPU {cpu[id(inc)] / cpu[id(full)]:.2f}")
    console.print(f"kept: first + incremental {len(split):,}, full rerun {len(together):,}, in one only "
                  f"{len(split ^ together):,} (a new document that links two indexed clusters keeps both survivors)")


def bench_rerun(mb: float, cores: int) -> None:
    """One snapshot fresh into an empty index, re-run against it (retiring), and against it appending nowhere."""
    upstream = derived_input(mb)
    settings = {"survivor_order": ["id"], "paragraphs": {"enabled": False}}  # paragraph counts are per run
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dedup-rerun-", dir=CACHE) as tmp:
        index = str(Path(tmp) / "index")
        runs = {}
        for name, fingerprint, own in (("fresh, into an empty index", "snapshot", index),
                                       ("re-run, retiring", "snapshot after an upstream change", index),
                                       ("against it, appending nowhere", "snapshot, upstream changed again", None)):
            runs[name] = stage_in_child(upstream, cores, Path(tmp) / f"run-{len(runs)}", phases=True,
                                        fingerprint=fingerprint, dedup={**settings, "index": own, "against": [index]})
    load = max(load, os.getloadavg()[0])

    def cpu(phase: dict) -> float:
        return sum(phase[k] for k in ("driver", "jvm", "workers"))

    fresh = runs["fresh, into an empty index"]
    table = Table(title=f"dedup re-run of {input_mb(upstream):.0f} MB against its own index, Spark local[{cores}], "
                        f"load average up to {load:.1f}")
    for col in ("run", "wall s", "CPU s", "clustering CPU s", "CPU / fresh", "clustering / fresh", "rows retired",
                "kept docs"):
        table.add_column(col)
    for name, r in runs.items():
        phases = r["phases"]
        table.add_row(name, f"{r['seconds']:.1f}", f"{cpu(phases['total']):.1f}", f"{cpu(phases['clustering']):.1f}",
                      f"{cpu(phases['total']) / cpu(fresh['phases']['total']):.2f}",
                      f"{cpu(phases['clustering']) / cpu(fresh['phases']['clustering']):.2f}",
                      str(r["extra"]["index_rows_retired"]), str(r["kept"]))
    console.print(table)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_stage":  # child process of e2e/memory/incremental
        options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
        print(json.dumps(run_stage_once(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), **options)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("signatures", help="signatures per core vs datasketch")
    for name, default, help_ in (("e2e", 200.0, "the stage vs datatrove"), ("memory", PART_MB, "peak RSS at 1x/4x/16x")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--mb", type=float, default=default, help=f"input size in MB (default {default})")
        p.add_argument("--cores", type=int, default=2, help="Spark local[N] and datatrove workers (default 2)")
    p = sub.add_parser("incremental", help="0.25x new data against a 1x index vs a 1.25x full rerun")
    p.add_argument("--mb", type=float, default=50.0, help="size of the indexed data, 1x (default 50)")
    p.add_argument("--cores", type=int, default=2, help="Spark local[N] (default 2)")
    p = sub.add_parser("rerun", help="a snapshot re-run against its own index vs a fresh run")
    p.add_argument("--mb", type=float, default=PART_MB, help=f"input size in MB (default {PART_MB})")
    p.add_argument("--cores", type=int, default=2, help="Spark local[N] (default 2)")
    p = sub.add_parser("star", help="one page copied N times")
    p.add_argument("--copies", type=int, default=100_000, help="copies (default 100,000)")
    p.add_argument("--cores", type=int, default=2, help="Spark local[N] (default 2)")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.what == "signatures":
        bench_signatures()
    elif args.what == "e2e":
        bench_e2e(args.mb, args.cores)
    elif args.what == "incremental":
        bench_incremental(args.mb, args.cores)
    elif args.what == "rerun":
        bench_rerun(args.mb, args.cores)
    elif args.what == "star":
        bench_star(args.copies, args.cores)
    else:
        bench_memory(args.mb, args.cores)


if __name__ == "__main__":
    main()
