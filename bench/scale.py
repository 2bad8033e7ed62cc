"""The whole pipeline at 1x, 4x and 16x input, in the forms the cluster configs read: time, CPU seconds
and peak memory per stage, and the per-core rates docs/scaling.md builds the cluster estimate on.

    .venv/bin/python bench/scale.py --warmup --forms jsonl wet warc --mb 6 --scales 1 4   # docs/scaling.md
    .venv/bin/python bench/scale.py --scales 1 4 16                    # JSON lines at 50, 200, 800 MB
    .venv/bin/python bench/scale.py --estimate-only work/bench-scale/results.json   # tables + estimate again

Input forms (`--forms`), each built from the real text of ../shared/data and `--mb` MB on disk at 1x:
- jsonl: JSON lines (the Pile's and WuDao's form in configs/dataproc.yaml and configs/emr.yaml):
  collages of real English and Chinese paragraphs (bench/dedup_quality.py's documents), half and
  half, with edited near-duplicate copies (sentences deleted, paragraphs swapped, typos,
  boilerplate) and exact copies, so dedup has real work at every scale; English in pile-*.jsonl,
  Chinese in wudao-*.jsonl, two ingest sources that declare their language.
- wet, warc: CommonCrawl's layout (one gzip member per record), with CC-MAIN-2024-22's share of
  pages per language (CC_LANGUAGE_SHARES: 46% English, 4.1% Chinese, the rest in 30 other
  languages, from the lingua sentences of ../shared/data/langid); English and Chinese pages are
  collages as above, with the same duplicate shares. A page's HTML is a real news page of
  ../shared/data/html/en-news (scripts, styles, navigation, ~90 KB) whose paragraphs are replaced
  by the page's text: a WARC response record; the WET record is that HTML's full text
  (resiliparse, main_content=False: menus included, as CommonCrawl's WET). The warc form runs
  HTML extraction in ingest.
The mix reads what the configs' mix reads (`--route job`: the dumps from ingest, the crawl's
Chinese after decontamination), or every English and Chinese document after decontamination
(`--route all`). Each scale runs the stages of `glmdata run` (crawl forms: ingest to mix, whose later work follows
the tokens, measured on jsonl) in one Spark local[2] session (the same code path as a cluster),
while a sampler reads the CPU seconds and resident memory of the driver's Python process, its
JVM and the Python workers from /proc. The baseline of a scale is the smallest scale of its form in
the same invocation: time ratios are printed against it.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
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

from dedup_quality import SHARED, edit, load_documents  # noqa: E402

console = Console(width=160)
WORK = REPO / "work" / "bench-scale"
FILE_MB = 8  # one input file: a work unit of ingest
CORES = 2
NEAR_DUP_SHARE, EXACT_DUP_SHARE = 0.15, 0.05
FORMS = ("jsonl", "wet", "warc")
CRAWL_STAGES_UNTIL = "mix"  # crawl forms: the document stages; the token stages are measured on jsonl


# ---------------------------------------------------------------------------------------------
# Input


def collage(pool: list[str], rng: random.Random) -> str:
    """A distinct document: 3-8 real paragraphs drawn from different documents of one language."""
    return "\n".join(rng.choice(pool) for _ in range(rng.randint(3, 8)))


class DocumentSource:
    """Distinct English and Chinese documents (collages of real paragraphs), with NEAR_DUP_SHARE
    edited copies and EXACT_DUP_SHARE exact copies of recent ones; other languages from lingua's
    sentences (langid drops them, dedup never sees them)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.docs = load_documents()
        self.pools = {lang: [p for t in texts for p in t.split("\n") if len(p) >= (120 if lang == "en" else 40)]
                      for lang, texts in self.docs.items()}
        self.recent: dict[str, list[str]] = {"en": [], "zh": []}
        self._sentences: dict[str, list[str]] = {}

    def next(self, lang: str) -> str:
        rng = self.rng
        if lang not in self.pools:
            if lang not in self._sentences:
                self._sentences[lang] = [json.loads(line)["text"]
                                         for line in open(SHARED / "langid" / f"lingua-{lang}.jsonl", encoding="utf-8")]
            return "\n".join(" ".join(rng.choice(self._sentences[lang]) for _ in range(rng.randint(2, 5)))
                             for _ in range(rng.randint(3, 12)))
        roll = rng.random()
        if self.recent[lang] and roll < EXACT_DUP_SHARE:
            return rng.choice(self.recent[lang])
        if self.recent[lang] and roll < EXACT_DUP_SHARE + NEAR_DUP_SHARE:
            return edit(rng.choice(self.recent[lang]), lang, self.docs[lang], rng)
        text = collage(self.pools[lang], rng)
        self.recent[lang] = (self.recent[lang] + [text])[-500:]
        return text


# The JSON-lines dumps of the configs, each one language (ingest declares it): name -> lang.
DUMPS = {"pile": "en", "wudao": "zh"}


def build_jsonl(folder: Path, megabytes: float, rng: random.Random) -> None:
    """JSON lines of ~`megabytes`, half English and half Chinese by bytes, each language in its own
    files (<dump>-NNNN.jsonl, as the Pile and WuDao come)."""
    texts = DocumentSource(rng)
    target = megabytes * 1e6
    written, index = 0, 0
    files = {dump: 0 for dump in DUMPS}
    out: dict[str, object] = {}
    while written < target:
        dump = "pile" if rng.random() < 0.5 else "wudao"
        if dump not in out or out[dump].tell() > FILE_MB * 1e6:
            if dump in out:
                out[dump].close()
            out[dump] = open(folder / f"{dump}-{files[dump]:04d}.jsonl", "w", encoding="utf-8")
            files[dump] += 1
        lang = DUMPS[dump]
        line = json.dumps({"id": f"scale-{index}", "text": texts.next(lang), "url": f"https://bench.example/{lang}/{index}"},
                          ensure_ascii=False) + "\n"
        out[dump].write(line)
        written += len(line.encode())
        index += 1
    for f in out.values():
        f.close()


# CommonCrawl CC-MAIN-2024-22: % of pages per primary language (CLD2), for the languages with lingua
# sentences in ../shared/data/langid; the pages of other or unknown languages (9.1%) are spread over
# these in proportion. Source: github.com/commoncrawl/cc-crawl-statistics, plots/languages.csv
# (commit 011ff43), rows CC-MAIN-2024-22.
CC_LANGUAGE_SHARES = {
    "en": 45.9693, "ru": 5.9154, "de": 5.5710, "ja": 4.9833, "es": 4.6177, "fr": 4.2157, "zh": 4.0651,
    "it": 2.4205, "pt": 2.0407, "nl": 1.8350, "pl": 1.7290, "tr": 1.1142, "vi": 0.9609, "id": 0.8905,
    "ko": 0.7008, "fa": 0.6807, "ar": 0.6353, "el": 0.5513, "uk": 0.4461, "th": 0.3988, "bg": 0.2883,
    "he": 0.2254, "hi": 0.1856, "la": 0.1169, "bn": 0.1078, "ms": 0.0740, "ka": 0.0370, "hy": 0.0319,
    "ur": 0.0307, "tl": 0.0144, "sw": 0.0090, "eo": 0.0084,
}
_PARAGRAPH = re.compile(rb"<p[\s>].*?</p>", re.S | re.I)
_TITLE = re.compile(rb"<title[^>]*>.*?</title>", re.S | re.I)


def page_shells() -> list[tuple[bytes, bytes, bytes]]:
    """Real news pages split around their paragraphs: (head .. first <p>, between, after the last </p>);
    the paragraphs in between are dropped and the page's own text goes where the first one was."""
    shells = []
    for path in sorted((SHARED / "html" / "en-news").glob("*.html.gz")):
        page = gzip.decompress(path.read_bytes())
        spans = [m.span() for m in _PARAGRAPH.finditer(page)]
        if spans:
            middle = _PARAGRAPH.sub(b"", page[spans[0][1]:spans[-1][0]])
            shells.append((page[:spans[0][0]], middle, page[spans[-1][1]:]))
    return shells


def fill_shell(shell: tuple[bytes, bytes, bytes], text: str) -> bytes:
    from html import escape

    head, middle, tail = shell
    title = escape(text.split("\n", 1)[0][:80]).encode()
    head = _TITLE.sub(lambda _: b"<title>" + title + b"</title>", head, count=1)
    body = "".join(f"<p>{escape(p)}</p>\n" for p in text.split("\n") if p.strip()).encode()
    return head + body + middle + tail


def build_crawl(folder: Path, megabytes: float, rng: random.Random, form: str) -> None:
    """CommonCrawl-shaped .warc.gz (request + response per page) or .warc.wet.gz (conversion records)
    of ~`megabytes` on disk, pages in CC_LANGUAGE_SHARES."""
    from resiliparse.extract.html2text import extract_plain_text

    from pipeline.demo_corpus import gzip_member, http_response, record_id, warc_record, warcinfo

    texts, shells = DocumentSource(rng), page_shells()
    langs, weights = zip(*CC_LANGUAGE_SHARES.items())
    suffix = ".warc.gz" if form == "warc" else ".warc.wet.gz"
    written, index, files, out = 0, 0, 0, None
    while written < megabytes * 1e6:
        if out is None or out.tell() > FILE_MB * 1e6:
            if out:
                out.close()
            name = f"CC-BENCH-{files:05d}{suffix}"
            out = open(folder / name, "wb")
            out.write(gzip_member(warcinfo(name)))
            files += 1
        lang = rng.choices(langs, weights)[0]
        url = f"https://bench.example/{lang}/{index}"
        html = fill_shell(rng.choice(shells), texts.next(lang))
        if form == "warc":
            request = f"GET /{lang}/{index} HTTP/1.1\r\nHost: bench.example\r\n\r\n".encode()
            records = [warc_record("request", url, request, "application/http; msgtype=request"),
                       warc_record("response", url, http_response(html, "text/html; charset=utf-8"),
                                   "application/http; msgtype=response")]
        else:
            page_text = extract_plain_text(html.decode(), main_content=False, alt_texts=False)
            records = [warc_record("conversion", url, page_text.encode(), "text/plain",
                                   {"WARC-Refers-To": record_id("response", url)})]
        for record in records:
            member = gzip_member(record)
            out.write(member)
            written += len(member)
        index += 1
    out.close()


def build_input(form: str, megabytes: float, seed: int = 1234) -> Path:
    """The input of `form` at ~`megabytes` on disk; cached by form and size."""
    folder = WORK / f"input-{form}-{megabytes:g}mb" if form != "jsonl" else WORK / f"input-dumps-{megabytes:g}mb"
    marker = folder / "_DONE"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    if form == "jsonl":
        build_jsonl(folder, megabytes, rng)
    else:
        build_crawl(folder, megabytes, rng, form)
    marker.write_text(f"{input_megabytes(folder):.1f} MB\n")
    return folder


def input_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith("_")) / 1e6


def _absolute_paths(node, base: Path):
    """Relative paths of a config (they resolve against its folder) made absolute, so it can move."""
    if isinstance(node, dict):
        return {k: _absolute_paths(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute_paths(v, base) for v in node]
    if isinstance(node, str) and node.startswith(("./", "../")):
        return str((base / node).resolve())
    return node


def mix_sources(form: str, route: str) -> tuple[list[dict], dict[str, float]]:
    """The mix's sources and language shares. `job`: as configs/glm130b.yaml routes them (the dumps
    straight from ingest, only the crawl's Chinese after the document stages); `all`: every English
    and Chinese document after decontamination, so each stage processes the whole input."""
    if route == "all":
        return [{"name": f"bench-{lang}", "lang": lang, "match_source": ["*"]} for lang in ("en", "zh")], \
            {"en": 0.5, "zh": 0.5}
    if form == "jsonl":
        return [{"name": dump, "lang": lang, "stage": "ingest", "match_source": [dump]}
                for dump, lang in DUMPS.items()], {"en": 0.5, "zh": 0.5}
    return [{"name": "cc-zh", "lang": "zh", "match_source": ["cc-zh"]}], {"zh": 1.0}


def write_config(root: Path, form: str, inputs: Path, megabytes: float, route: str) -> Path:
    """configs/demo.yaml's stage settings on the bench input; the mix takes its sources (`route`) to a budget."""
    raw = _absolute_paths(yaml.safe_load((REPO / "configs" / "demo.yaml").read_text()), REPO / "configs")
    raw["run"] = {"workdir": str(root / "work"), "engine": "spark", "seed": 1234,
                  "spark": {"master": f"local[{CORES}]", "conf": {"spark.driver.memory": "4g"}}}
    if form == "jsonl":
        raw["ingest"] = {"sources": [{"name": dump, "format": "jsonl", "lang": lang,
                                      "paths": [str(inputs / f"{dump}-*.jsonl")]} for dump, lang in DUMPS.items()]}
    else:
        pattern = {"wet": "*.warc.wet.gz", "warc": "*.warc.gz"}[form]
        raw["ingest"] = {"sources": [{"name": "cc-zh", "format": form, "paths": [str(inputs / pattern)]}]}
    sources, shares = mix_sources(form, route)
    raw["mix"] = ({
        "sources": sources, "language_shares": shares,
        # About what survives of JSON lines, in tokens at the default bytes per token (en 4, zh 3);
        # the crawl forms keep less text per input MB (a shortfall is reported, not an error).
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


def kept_megabytes(workdir: str, stage: str, lang: str) -> float:
    """MB of text in `lang` a finished stage kept (what a source yields of one language)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not (Path(workdir) / stage / "data").is_dir():  # the stage read nothing (run.skip_not_in_mix)
        return 0.0
    table = ds.dataset(str(Path(workdir) / stage / "data"), format="parquet").to_table(
        columns=["text"], filter=ds.field("lang") == lang)
    return pc.sum(pc.binary_length(table["text"].cast("binary"))).as_py() / 1e6 if table.num_rows else 0.0


def run_scale(form: str, scale: int, megabytes: float, route: str) -> list[dict]:
    from pipeline import registry
    from pipeline.stages import load_config
    from pipeline.engines.spark import SparkEngine
    from pipeline.report import write_report
    from pipeline.run_all import pipeline_stages
    from pipeline.runner import run_stage

    inputs = build_input(form, megabytes * scale)
    input_mb = input_megabytes(inputs)
    root = WORK / f"run-{form}-{megabytes * scale:g}mb"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = load_config(write_config(root, form, inputs, megabytes * scale, route))
    engine = SparkEngine(cfg)
    rows = []
    try:
        _ = engine.spark  # session start is not a stage's cost
        for name in pipeline_stages(last=None if form == "jsonl" else CRAWL_STAGES_UNTIL):
            with ResourceSampler() as mem:
                started = time.time()
                stats = run_stage(registry.STAGES[name](cfg), engine)
                wall = time.time() - started
            rows.append({"form": form, "scale": scale, "route": route, "stage": name, "seconds": wall, "input_mb": input_mb,
                         "in_mb": (stats["in"]["bytes"] + stats["created"]["bytes"]) / 1e6,
                         "in_docs": stats["in"]["docs"] + stats["created"]["docs"],
                         "kept_docs": stats["kept"]["docs"], "cpu_seconds": mem.cpu_seconds,
                         **{f"peak_{k}_mb": v for k, v in mem.peaks.items()}})
            if name == "langid":
                rows[-1]["kept_zh_mb"] = kept_megabytes(cfg.run.workdir, "langid", "zh")
            if name == "shards":
                rows[-1]["tokens"] = float(stats["report"]["tokens"])
            console.print(f"{form} {scale}x {name}: {wall:.1f} s, {mem.cpu_seconds:.0f} CPU s, {rows[-1]['in_mb']:.1f} MB in, "
                          f"driver {mem.peaks['driver_py']:.0f} MB, JVM {mem.peaks['jvm']:.0f} MB")
        with ResourceSampler() as mem:
            started = time.time()
            write_report(cfg.run.workdir, engine, Console(file=open(os.devnull, "w")))
            rows.append({"form": form, "scale": scale, "route": route, "stage": "report", "seconds": time.time() - started,
                         "input_mb": input_mb,
                         "in_mb": rows[0]["in_mb"], "in_docs": rows[0]["in_docs"], "kept_docs": 0,
                         "cpu_seconds": mem.cpu_seconds, **{f"peak_{k}_mb": v for k, v in mem.peaks.items()}})
    finally:
        engine.close()
    return rows


def print_table(rows: list[dict]) -> None:
    for form in [f for f in FORMS if any(r["form"] == f for r in rows)]:
        of_form = [r for r in rows if r["form"] == form]
        scales = sorted({r["scale"] for r in of_form})
        base = {r["stage"]: r for r in of_form if r["scale"] == scales[0]}
        sizes = ", ".join(f"{r['input_mb']:.0f}" for r in of_form if r["stage"] == "ingest")
        table = Table(title=f"{form} at {', '.join(f'{s}x' for s in scales)} (Spark local[{CORES}]): {sizes} MB on disk")
        for col in ("scale", "stage", "MB in", "seconds", f"time / {scales[0]}x", "CPU s", "CPU s per MB on disk",
                    "driver Python MB", "JVM MB", "Python workers MB"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for r in of_form:
            b = base.get(r["stage"])
            table.add_row(f"{r['scale']}x", r["stage"], f"{r['in_mb']:.1f}", f"{r['seconds']:.1f}",
                          f"{r['seconds'] / b['seconds']:.2f}" if b and b["seconds"] else "",
                          f"{r['cpu_seconds']:.0f}", f"{r['cpu_seconds'] / r['input_mb']:.3f}",
                          f"{r['peak_driver_py_mb']:.0f}", f"{r['peak_jvm_mb']:.0f}", f"{r['peak_workers_mb']:.0f}")
        console.print(table)
        for s in scales[1:]:
            total = sum(r["seconds"] for r in of_form if r["scale"] == s)
            total0 = sum(r["seconds"] for r in of_form if r["scale"] == scales[0])
            console.print(f"{form} {s}x: {total:.0f} s in all = {total / total0:.2f} x the {scales[0]}x time "
                          f"(input {s / scales[0]:g}x)")
        langid = [r for r in of_form if r["stage"] == "langid"]
        for r in langid:
            console.print(f"{form} {r['scale']}x: langid kept {r['kept_zh_mb']:.2f} MB of Chinese text from "
                          f"{r['input_mb']:.1f} MB on disk ({r['kept_zh_mb'] / r['input_mb']:.4f} MB per MB)")


# ---------------------------------------------------------------------------------------------
# The GLM-130B-sized job as configs/dataproc.yaml and configs/emr.yaml describe it

CONFIGS = ("configs/dataproc.yaml", "configs/emr.yaml")
# Their ingest.sources: name -> (form, MB read). GLM-130B: 1.2 TB of the Pile, 1.0 TB of WuDao (both
# JSON lines), and 250 GB of Chinese web text: cc-zh reads as much CommonCrawl WET as yields that
# much Chinese after langid (None: computed from the wet run's measured yield).
SOURCES = {"pile": ("jsonl", 1.2e6), "wudao": ("jsonl", 1.0e6), "cc-zh": ("wet", None)}
CC_ZH_TARGET_MB = 250e3
OUTPUT_TOKENS = 400e9
HEADROOM = 1.25  # stragglers, retries, executor start-up: cluster vCPUs busy ~80% of a run
RUN_HOURS = 24
NODE_VCPUS = 16
# On-demand list prices, with their sources in docs/scaling.md. Clusters: per node-hour (16 vCPU, 64 GB);
# Dataproc bills its fee per vCPU-hour on top of Compute Engine, EMR per instance-hour on top of EC2.
NODE_PRICES = {
    "Dataproc on GCE (n2-standard-16, us-central1)": {"vm": 0.776944, "fee": 0.010 * NODE_VCPUS},
    "EMR on EC2 (m6i.4xlarge, us-east-1)": {"vm": 0.768, "fee": 0.192},
}
# Serverless: per vCPU-hour of executors, at the configs' 14 GB per 4 cores (3.5 GB per vCPU).
GB_PER_VCPU = 3.5
VCPU_HOUR_PRICES = {
    "Dataproc Serverless (standard DCU, us-central1)": 0.060 * (0.6 + 0.1 * GB_PER_VCPU),  # 0.6 DCU/vCPU + 0.1 DCU/GB
    "EMR Serverless (us-east-1)": 0.052624 + 0.0057785 * GB_PER_VCPU,
}
TOKEN_STAGES = ("encode", "shards")  # their work follows the output tokens, not the raw input
# BigCode's Spark MinHash near-deduplication on Dataproc (ChenghaoMou/text-dedup, the code behind
# huggingface.co/blog/dedup): 319 GB in about 40 minutes on 10 c2d-standard-16 workers, dedup alone.
BIGCODE_VCPU_HOURS_PER_GB = 10 * 16 * (40 / 60) / 319


def check_configs() -> None:
    """The sources this estimate prices are the ones the cluster configs read."""
    expected = {name: form for name, (form, _) in SOURCES.items()}
    for path in CONFIGS:
        sources = yaml.safe_load((REPO / path).read_text())["ingest"]["sources"]
        found = {s["name"]: s["format"] for s in sources}
        if found != expected:
            raise SystemExit(f"{path}: ingest.sources {found} != the estimate's {expected}: update SOURCES or the config")


def largest(rows: list[dict], form: str) -> dict[str, dict]:
    scale = max(r["scale"] for r in rows if r["form"] == form)
    return {r["stage"]: r for r in rows if r["form"] == form and r["scale"] == scale}


def _tokens(rows: list[dict], row: dict) -> float:
    """Output tokens (millions) of the run `row` belongs to."""
    return next(r["tokens"] for r in rows if r["form"] == row["form"] and r["scale"] == row["scale"]
                and r["stage"] == "shards") / 1e6


def cpu_rate(rows: list[dict], form: str, stage: str) -> float:
    """CPU seconds per unit of a stage's work (MB on disk of the input; for encode and shards, 1M output
    tokens): the slope between the form's smallest and largest scale, since a stage's fixed part (Spark
    jobs starting, dedup's clustering rounds) is paid once per run, not per MB; with one scale (or a
    slope the noise made non-positive), the plain ratio at the largest scale, which overstates."""
    runs = sorted((r for r in rows if r["form"] == form and r["stage"] == stage), key=lambda r: r["scale"])
    unit = (lambda r: _tokens(rows, r)) if stage in TOKEN_STAGES else (lambda r: r["input_mb"])
    lo, hi = runs[0], runs[-1]
    if unit(hi) > unit(lo) and hi["cpu_seconds"] > lo["cpu_seconds"]:
        return (hi["cpu_seconds"] - lo["cpu_seconds"]) / (unit(hi) - unit(lo))
    return hi["cpu_seconds"] / unit(hi)


def source_megabytes(rows: list[dict], form: str, megabytes: float | None) -> float:
    if megabytes is not None:
        return megabytes
    langid = largest(rows, form)["langid"]
    return CC_ZH_TARGET_MB / (langid["kept_zh_mb"] / langid["input_mb"])


def core_hours(rows: list[dict], sources: dict[str, tuple[str, float | None]]) -> dict[str, float]:
    """Stage -> core-hours: document stages by CPU seconds per MB on disk of each source's form,
    token stages by CPU seconds per 1M output tokens (jsonl run); x HEADROOM."""
    hours: dict[str, float] = {}
    for form, megabytes in sources.values():
        size = source_megabytes(rows, form, megabytes)
        for stage in largest(rows, form):
            if stage not in TOKEN_STAGES and stage != "tokenizer":
                hours[stage] = hours.get(stage, 0.0) + cpu_rate(rows, form, stage) * size / 3600 * HEADROOM
    for stage in TOKEN_STAGES:
        hours[stage] = cpu_rate(rows, "jsonl", stage) * OUTPUT_TOKENS / 1e6 / 3600 * HEADROOM
    return hours


def estimate(rows: list[dict]) -> None:
    """Core-hours per stage for the configs' sources in / 400B tokens out, the cluster for a 24-hour
    run, its price, and dedup's cost per GB against BigCode's."""
    check_configs()
    hours = core_hours(rows, SOURCES)
    total = sum(hours.values())
    table = Table(title=f"GLM-130B-sized job of {', '.join(CONFIGS)}, x{HEADROOM} headroom")
    for col in ("source", "form", "MB on disk"):
        table.add_column(col, justify="right" if col == "MB on disk" else "left")
    for name, (form, megabytes) in SOURCES.items():
        table.add_row(name, form, f"{source_megabytes(rows, form, megabytes):,.0f}")
    console.print(table)
    forms = [f for f in FORMS if any(r["form"] == f for r in rows)]
    table = Table()
    for col in ("stage", *[f"CPU s per MB of {f}" for f in forms], "core-hours", "share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, h in hours.items():
        rates = [f"{cpu_rate(rows, f, stage):.3f}" if stage in largest(rows, f) and stage not in TOKEN_STAGES else ""
                 for f in forms]
        if stage in TOKEN_STAGES:
            rates[0] = f"{cpu_rate(rows, 'jsonl', stage):.3f} per 1M tokens"
        table.add_row(stage, *rates, f"{h:,.0f}", f"{h / total:.0%}")
    console.print(table)
    if any(r["form"] == "warc" for r in rows):
        as_warc = sum(core_hours(rows, {**SOURCES, "cc-zh": ("warc", None)}).values())
        console.print(f"with cc-zh read as WARC (HTML extraction in ingest) instead of WET: {as_warc:,.0f} core-hours "
                      f"({source_megabytes(rows, 'warc', None):,.0f} MB of WARC)")
    workers = math.ceil(total / RUN_HOURS / NODE_VCPUS)
    console.print(f"total {total:,.0f} core-hours; a {RUN_HOURS}-hour run needs {total / RUN_HOURS:,.0f} vCPUs = "
                  f"{workers} workers of {NODE_VCPUS} vCPUs (+1 master)")
    for name, p in NODE_PRICES.items():
        per_hour = p["vm"] + p["fee"]
        console.print(f"{name}: ${per_hour:.3f}/node-hour x {workers + 1} nodes x {RUN_HOURS} h = "
                      f"${(workers + 1) * RUN_HOURS * per_hour:,.0f}; {total:,.0f} core-hours at the per-vCPU rate: "
                      f"${total * per_hour / NODE_VCPUS:,.0f}")
    for name, per_vcpu_hour in VCPU_HOUR_PRICES.items():
        console.print(f"{name}: ${per_vcpu_hour:.4f}/vCPU-hour x {total:,.0f} core-hours = ${total * per_vcpu_hour:,.0f}")
    for path, flag in zip(CONFIGS, (f"--num-workers {workers}", f"--instance-count {workers + 1}")):
        named = re.search(re.escape(flag) + r"(?!\d)", (REPO / path).read_text())
        state = "agrees" if named else "DISAGREES: update its cluster comment"
        console.print(f"{path}: `{flag}` {state}")
    for form in forms:
        dedup = largest(rows, form)["dedup"]  # per GB of what dedup reads, as BigCode's figure
        if not dedup["in_mb"]:  # the mix reads none of this form after dedup: dedup skipped it
            continue
        per_gb = cpu_rate(rows, form, "dedup") * dedup["input_mb"] / dedup["in_mb"] * 1000 / 3600
        console.print(f"dedup on {form}: {per_gb:.3f} CPU-hours per GB of dedup input; BigCode's Spark MinHash "
                      f"{BIGCODE_VCPU_HOURS_PER_GB:.3f} vCPU-hours per GB; ours / BigCode = {per_gb / BIGCODE_VCPU_HOURS_PER_GB:.2f}")
    if "tokenizer" in largest(rows, "jsonl"):
        tok = largest(rows, "jsonl")["tokenizer"]
        console.print(f"tokenizer (driver, bounded sample): {tok['seconds']:.0f} s wall, {tok['cpu_seconds']:.0f} CPU s "
                      f"for {tok['in_mb']:.0f} MB of mix documents")


def compare(before: list[dict], after: list[dict]) -> None:
    """Core-hours per stage of the same job priced from two sets of runs (e.g. the code before a change,
    run on the same inputs from a worktree of its commit, and the code after it)."""
    old, new = core_hours(before, SOURCES), core_hours(after, SOURCES)
    table = Table(title="GLM-130B-sized job: core-hours before / after")
    for col in ("stage", "before", "after", "after / before"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage in [*old, *(s for s in new if s not in old)]:
        a, b = old.get(stage, 0.0), new.get(stage, 0.0)
        table.add_row(stage, f"{a:,.0f}", f"{b:,.0f}", f"{b / a:.2f}" if a else "new stage")
    table.add_row("total", f"{sum(old.values()):,.0f}", f"{sum(new.values()):,.0f}",
                  f"{sum(new.values()) / sum(old.values()):.2f}")
    console.print(table)


def merge_results(paths: list[str]) -> list[dict]:
    """Rows of several results.json files; a later file's forms replace an earlier one's."""
    rows: list[dict] = []
    for path in paths:
        new = json.loads(Path(path).read_text())
        forms = {r["form"] for r in new}
        rows = [r for r in rows if r["form"] not in forms] + new
    return rows


def main() -> int:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=["jsonl"],
                        help="input forms to run (the estimate needs jsonl and wet; warc adds the WARC alternative)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--mb", type=float, default=50, help="input size at 1x in MB on disk (default 50)")
    parser.add_argument("--route", choices=["job", "all"], default="job",
                        help="job (default): the mix takes the dumps from ingest and only the crawl's Chinese after "
                             "the document stages, as configs/glm130b.yaml does, so stages skip what it never reads "
                             "(run.skip_not_in_mix); all: every stage processes every document")
    parser.add_argument("--warmup", action="store_true",
                        help="first run the whole pipeline once on 2 MB of JSON lines, unmeasured: the JVM compiles "
                             "dedup's code paths on its first run, which would otherwise weigh on the smallest scale")
    parser.add_argument("--work", default=str(WORK), help=f"inputs, runs and results.json (default {WORK})")
    parser.add_argument("--estimate-only", metavar="RESULTS_JSON", nargs="+",
                        help="print the tables and the GLM-130B estimate from earlier runs' results.json "
                             "(several: a later file's forms replace an earlier one's)")
    parser.add_argument("--baseline", metavar="RESULTS_JSON", nargs="+",
                        help="with --estimate-only: also price the job from these results (e.g. the code before a "
                             "change, run on the same inputs: docs/scaling.md says how) and print both per stage")
    args = parser.parse_args()
    if args.estimate_only:
        rows = merge_results(args.estimate_only)
        print_table(rows)
        estimate(rows)
        if args.baseline:
            compare(merge_results(args.baseline), rows)
        return 0
    WORK = Path(args.work).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.warmup:
        run_scale("jsonl", 1, 2.0, args.route)
    rows = []
    for form in args.forms:
        for scale in args.scales:
            rows += run_scale(form, scale, args.mb, args.route)
            (WORK / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)
    if {"jsonl", "wet"} <= set(args.forms):
        estimate(rows)
    console.print(f"results: {WORK / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
