"""`glmdata decontaminate`: documents that share an n-gram with a benchmark's test items.

A map stage between dedup and mix (filters/decontam.py does the matching). The benchmark files the
config names are read once per worker process into one index; a document costs its own n-grams,
whatever the number of benchmarks. `action: drop` sends a contaminated document to
rejected/contaminated:<benchmark> (the first benchmark it matches) with the matched items as the
detail; `action: flag` keeps it with `q_contam_items` (how many items it shares n-grams with) and
`q_contam_benchmarks` (their benchmarks), as every kept document has.

stats.json: `extra` counts documents per benchmark (`contaminated_docs|<name>`); `report` holds per
benchmark the items found (how many of its items occur somewhere), the items that are too short to
detect, and the most frequent items with how many documents hold them.

With no benchmark configured the stage keeps every document (one pass over the data): name your
benchmark files, e.g. MMLU's test split exported as JSON lines:

    decontaminate:
      benchmarks:
        - {name: mmlu, path: /data/mmlu/test.jsonl, fields: [question]}
        - {name: ceval, path: /data/ceval/test.parquet, fields: [question, A, B, C, D], lang: zh}
"""
from __future__ import annotations

import gzip
import io
import json
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from filters.decontam import BenchmarkItem, ContaminationIndex, item_lang
from pipeline import storage
from pipeline.config import ConfigError, InputPath, is_remote, register_section
from pipeline.registry import register_stage
from pipeline.stage import BatchResult, MapStage, StageRun, StageStats
from pipeline.stages.readers import ReadsWhatMixUses

CONTAMINATED = "contaminated"


@dataclass
class Benchmark:
    name: str  # reported, and the rejection reason's suffix
    path: InputPath  # JSON lines (.jsonl, .jsonl.gz), Parquet, or plain text (.txt: one item a line)
    fields: list[str] = field(default_factory=lambda: ["text"])  # joined by newlines into one item
    lang: Literal["en", "zh"] | None = None  # None: per item, zh when >= 30% of its letters outside LaTeX are Han


@register_section("decontaminate")
@dataclass
class DecontaminateSection:
    benchmarks: list[Benchmark] = field(default_factory=list)
    action: Literal["drop", "flag"] = "drop"
    en_ngram: int = 13        # English word n-grams (GPT-3)
    zh_ngram: int = 13        # Chinese character n-grams: smallest n with no false positive on clean news (bench/decontam.py)
    en_min_tokens: int = 8    # shorter items are matched whole as n-grams of this size, if at least this long
    zh_min_tokens: int = 10
    top_items: int = 10       # most frequent items listed per benchmark in the report

    def __post_init__(self):
        for key in ("en_ngram", "zh_ngram", "en_min_tokens", "zh_min_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected at least 1, got {getattr(self, key)}")
        if self.en_min_tokens > self.en_ngram or self.zh_min_tokens > self.zh_ngram:
            raise ValueError("en_min_tokens / zh_min_tokens: expected at most en_ngram / zh_ngram")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmarks: names must be unique, got {names}")


def read_items(benchmark: Benchmark) -> list[BenchmarkItem]:
    """The items of one benchmark file, in file order."""
    path, fields = benchmark.path, benchmark.fields
    if path.endswith(".parquet"):
        table = pq.read_table(storage.open_input(path))
        missing = [f for f in benchmark.fields if f not in table.column_names]
        if missing:
            raise ConfigError(f"decontaminate.benchmarks[{benchmark.name}].fields: {path} has no column "
                              f"{missing[0]!r}; columns: {', '.join(table.column_names)}")
        rows = table.select(benchmark.fields).to_pylist()
    else:
        raw = storage.read_bytes(path)
        try:
            text = (gzip.decompress(raw) if path.endswith(".gz") else raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: decontaminate.benchmarks[{benchmark.name}]: expected UTF-8 text (JSON lines or "
                              f"one item a line, gzipped if named .gz) or Parquet; byte {e.start} is not UTF-8") from None
        if ".jsonl" in path or ".json" in path:
            rows = []
            for number, line in enumerate(io.StringIO(text), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    rows.append({f: row[f] for f in benchmark.fields})
                    for value in rows[-1].values():  # "\ud800" parses to a lone surrogate: no UTF-8 to hash
                        if isinstance(value, str):
                            value.encode("utf-8")
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ConfigError(f"{path}:{number}: decontaminate.benchmarks[{benchmark.name}]: expected a "
                                      f"JSON object with fields {benchmark.fields} ({type(e).__name__}: {e})") from None
                except UnicodeEncodeError as e:
                    raise ConfigError(f"{path}:{number}: decontaminate.benchmarks[{benchmark.name}]: expected text UTF-8 "
                                      f"can encode, got the lone surrogate U+{ord(e.object[e.start]):04X}") from None
        else:  # plain text: one item a line
            fields = ["text"]
            rows = [{"text": line} for line in text.splitlines() if line.strip()]
    items = []
    for k, row in enumerate(rows):
        joined = "\n".join(str(row[f]) for f in fields if row[f] is not None)
        items.append(BenchmarkItem(benchmark.name, k, joined, benchmark.lang or item_lang(joined)))
    return items


_INDEXES: dict[str, ContaminationIndex] = {}  # per worker process, by the section's settings
_INDEX_LOCK = threading.Lock()


@register_stage
class DecontaminateStage(ReadsWhatMixUses, MapStage):
    name = "decontaminate"
    upstream = "dedup"
    # 2: items found in pages of the other language; 3: English items quoting Chinese found by the Chinese they
    # quote; 4: English items holding a Chinese word found in Chinese pages; 5: ... however the item joins the word to
    # its English, and in Traditional or Simplified (words folded as Chinese, Han split from letters and digits);
    # 6: Chinese mostly digits found in English pages (digits counted as Han), short items mostly numerals too short
    output_version = 6
    batch_size = 1024

    def __init__(self, cfg):
        super().__init__(cfg)
        for benchmark in self.section.benchmarks:  # a field a local file lacks fails when the run starts
            if not is_remote(benchmark.path):  # (remote ones: when the stage runs, where credentials are)
                read_items(benchmark)

    def index(self) -> ContaminationIndex:
        """Built once per worker process from the benchmark files (they are small)."""
        key = self.config_hash()
        with _INDEX_LOCK:
            if key not in _INDEXES:
                s: DecontaminateSection = self.section
                items = [item for b in s.benchmarks for item in read_items(b)]
                _INDEXES[key] = ContaminationIndex(items, s.en_ngram, s.zh_ngram, s.en_min_tokens, s.zh_min_tokens)
            return _INDEXES[key]

    def setup_driver(self, stage_run: StageRun) -> None:
        self.index()  # a bad benchmark file fails here, once, with its name

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        s: DecontaminateSection = self.section
        index = self.index()
        found = index.find(batch.column("text").to_pylist(), batch.column("lang").to_pylist()) \
            if index.passes else [[] for _ in range(batch.num_rows)]
        reasons, details, names, extra = [], [], [], defaultdict(float)
        for items in found:
            benchmarks = sorted({index.items[k].benchmark for k in items})
            names.append(",".join(benchmarks) or None)
            for b in benchmarks:
                extra[f"contaminated_docs|{b}"] += 1
            for k in items:
                extra[f"item|{index.items[k].benchmark}|{index.items[k].index}"] += 1
            if items and s.action == "drop":
                reasons.append(f"{CONTAMINATED}:{benchmarks[0]}")
                details.append(" ".join(f"{index.items[k].benchmark}#{index.items[k].index}" for k in items))
            else:
                reasons.append(None)
                details.append(None)
        table = pa.Table.from_batches([batch])
        for name in ("q_contam_items", "q_contam_benchmarks"):
            if name in table.column_names:
                table = table.drop_columns([name])
        table = table.append_column(pa.field("q_contam_items", pa.int32()), pa.array([len(f) for f in found], pa.int32()))
        table = table.append_column(pa.field("q_contam_benchmarks", pa.string()), pa.array(names, pa.string()))
        return BatchResult(table, reasons, details, extra=dict(extra))

    def execute(self, stage_run: StageRun) -> StageStats:
        stats = super().execute(stage_run)
        self._report = self.summarize(stats)
        return stats

    def summarize(self, stats: StageStats) -> dict:
        """Per benchmark: items, items found, too short to detect, most frequent items. Moves the
        per-item counts out of `extra` (one key per item found) into this summary."""
        index = self.index()
        per_item: dict[str, Counter] = defaultdict(Counter)
        for key in [k for k in stats.extra if k.startswith("item|")]:
            bench, _, number = key.removeprefix("item|").rpartition("|")  # a name may hold "|" too
            per_item[bench][int(number)] = int(stats.extra.pop(key))
        items_of = Counter(i.benchmark for i in index.items)
        too_short = Counter(index.items[k].benchmark for k in index.too_short)
        summary = {}
        for b in self.section.benchmarks:
            # ties by item number: the counts' order is the order units reported them, which their number changes
            top = sorted(per_item[b.name].items(), key=lambda kv: (-kv[1], kv[0]))[:self.section.top_items]
            listed = {k for k, _ in top}
            texts = {i.index: i.text for i in index.items if i.benchmark == b.name and i.index in listed}
            summary[b.name] = {
                "items": items_of[b.name], "items_found": len(per_item[b.name]),
                "items_too_short": too_short[b.name],
                "documents": int(stats.extra.get(f"contaminated_docs|{b.name}", 0)),
                "top_items": [{"item": k, "documents": n, "text": texts[k][:300]} for k, n in top],
            }
        return {"action": self.section.action, "benchmarks": summary}

    def report_data(self, stage_run: StageRun) -> dict:
        return self._report
