"""Two small stages for the tests of the machinery around stages (`glmdata run`'s order and
--from/--until): a JSON-lines reader and a length filter."""
from __future__ import annotations

import json
import posixpath
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


@register_stage
class E2EFilter(MapStage):
    name = "e2e_filter"
    upstream = "e2e_source"
    batch_size = 64

    def process_batch(self, batch):
        reasons = ["too_short" if len(text) < self.section.min_chars else None for text in batch.column("text").to_pylist()]
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
