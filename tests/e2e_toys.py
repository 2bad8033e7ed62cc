"""Two small stages for the tests of the machinery around stages (`glmdata run`'s order and
--from/--until, the standalone cluster, S3): a JSON-lines reader and a filter that loads a word list
once per worker and can be slowed down so a test catches it in the middle.

Run as a script it is `glmdata` with these two stages as the whole pipeline, which is how the
cluster test submits it through spark-submit.
"""
from __future__ import annotations

import json
import posixpath
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline import storage
from pipeline.config import register_section
from pipeline.registry import register_stage
from pipeline.schema import DOC_SCHEMA, doc_id
from pipeline.stage import BatchResult, MapStage, Stage

ORDER = ["e2e_source", "e2e_filter"]


@register_section("e2e_source")
@dataclass
class E2ESourceSection:
    inputs: str = ""  # JSONL files (glob, local or s3://), each line {"text", "lang"}


@register_section("e2e_filter")
@dataclass
class E2EFilterSection:
    min_chars: int = 200
    blocklist: str = ""  # a word list file (local or s3://), loaded once per worker
    unit_seconds: float = 0.0  # pause per file, so a test can kill a run in the middle of the stage


@register_stage
class E2ESource(Stage):
    name = "e2e_source"

    def input_paths(self):
        return storage.expand(self.section.inputs)

    def units(self, stage_run):
        return self.input_paths()

    def process_unit(self, index, unit, out):
        name = posixpath.basename(unit)
        rows, offset = [], 0
        for line in storage.read_bytes(unit).splitlines(keepends=True):
            rec = json.loads(line)
            rows.append({"id": doc_id(name, offset), "text": rec["text"], "source": "e2e", "source_file": name,
                         "source_offset": offset, "lang": rec.get("lang")})
            offset += len(line)
        nbytes = sum(len(r["text"].encode()) for r in rows)
        out.consumed(len(rows), nbytes)
        out.keep(pa.Table.from_pylist(rows, DOC_SCHEMA), nbytes)


_BLOCKLISTS: dict[str, frozenset] = {}


def blocklist(path: str) -> frozenset:
    if path not in _BLOCKLISTS:
        _BLOCKLISTS[path] = frozenset(storage.read_text(path).split()) if path else frozenset()
    return _BLOCKLISTS[path]


@register_stage
class E2EFilter(MapStage):
    name = "e2e_filter"
    upstream = "e2e_source"
    batch_size = 64

    def process_unit(self, unit_index, unit, out):
        time.sleep(self.section.unit_seconds)
        super().process_unit(unit_index, unit, out)

    def process_batch(self, batch):
        blocked = blocklist(self.section.blocklist)
        reasons = []
        for text in batch.column("text").to_pylist():
            if len(text) < self.section.min_chars:
                reasons.append("too_short")
            elif blocked and any(w in text for w in blocked):
                reasons.append("blocked_word")
            else:
                reasons.append(None)
        return BatchResult(batch, reasons)


def write_inputs(folder: Path, shared_data: Path, files: int = 6, lines_per_file: int = 60) -> list[Path]:
    """JSON-lines inputs cut from the real prose in shared/data/text (English and Chinese interleaved)."""
    lines = []
    for name in ("en-news-scrapinghub.jsonl", "zh-news-thucnews.jsonl", "zh-wiki-cmrc2018.jsonl"):
        with open(shared_data / "text" / name, encoding="utf-8") as f:
            lines.append([json.dumps({"text": json.loads(x)["text"], "lang": json.loads(x)["lang"]},
                                     ensure_ascii=False) for x in f][: files * lines_per_file // 3 + 1])
    mixed = [x for group in zip(*lines) for x in group]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        p = folder / f"part-{i:02d}.jsonl"
        p.write_text("\n".join(mixed[i * lines_per_file:(i + 1) * lines_per_file]) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


def output_digest(workdir: str | Path, stages: list[str] = ORDER) -> dict[str, str]:
    """sha256 of every file a stage committed (data, rejected, errors) and its stats without timings."""
    import hashlib

    out = {}
    for stage in stages:
        root = storage.join(str(workdir), stage)
        for path in storage.expand(root):
            rel = path[len(root):].lstrip("/")
            if rel.startswith(("data/", "rejected/", "errors/")):
                out[f"{stage}/{rel}"] = hashlib.sha256(storage.read_bytes(path)).hexdigest()
        stats = json.loads(storage.read_text(storage.join(root, "stats.json")))
        for timing in ("seconds", "skipped", "engine"):
            stats.pop(timing, None)
        out[f"{stage}/stats.json"] = json.dumps(stats, sort_keys=True)
    return out


def main(argv: list[str]) -> int:
    import os

    from pipeline import cluster_entry, stages
    from pipeline.cli import main as glmdata

    # The cluster test runs real stages before these two: E2E_STAGE_ORDER=ingest,langid,e2e_source,e2e_filter
    stages.STAGE_ORDER[:] = os.environ.get("E2E_STAGE_ORDER", ",".join(ORDER)).split(",")
    # Under spark-submit (the cluster tests) it is the cluster entry; run directly, plain glmdata.
    return cluster_entry.main(argv) if "PYSPARK_GATEWAY_PORT" in os.environ else glmdata(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
