"""A small run written through the real UnitWriter, for the report tests: five document stages whose
profiles are recorded as a run records them, a shards report and manifest, a rejected reason with
hostile text, an error row. `min_words` is the quality threshold, so two fixtures with different
values differ as two runs with a changed threshold do."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import StageStats, UnitWriter

NASTY = '<script>alert("x")</script><img src="http://example.invalid/x.png"> spam & more'
SOURCES = ("news-en", "forum-zh", "mixed-crawl")
QUALITY_SCHEMA = pa.schema(list(DOC_SCHEMA) + [("q_score", pa.float64()), ("q_n_words", pa.int64())])
DEDUP_SCHEMA = pa.schema(list(QUALITY_SCHEMA) + [("dup_cluster_id", pa.string()), ("dup_cluster_size", pa.int64())])


def documents(n: int = 90) -> list[dict]:
    docs = []
    for i in range(n):
        source = SOURCES[i % 3]
        lang = "en" if source == "news-en" else "zh" if source == "forum-zh" else ("en", "zh", "ja")[i // 3 % 3]
        words = 3 + (i * 37) % 60
        text = ("word " if lang != "zh" else "中文字 ") * words + f"#{i}"
        if i in (4, 7):  # a duplicate pair (forum-zh): 7 repeats 4's text
            text = "the same page again " * 20
        docs.append({"id": f"d{i:03d}", "text": text, "url": f"https://example.org/{source}/{i}", "source": source,
                     "source_file": f"{source}.jsonl", "source_offset": i * 100, "lang": lang, "lang_score": 0.9})
    docs[10]["text"] = NASTY * 4  # forum-zh: reaches quality, rejected as spam
    return docs


def write_stage(workdir: Path, stage: str, units: list[list[tuple[dict, str | None, str | None]]], schema: pa.Schema,
                report: dict | None = None, engine: str = "spark", errors: int = 0) -> dict:
    """Route each unit's (row, reason or None, detail) through a UnitWriter; write stats.json as the runner does."""
    total = StageStats()
    for index, unit in enumerate(units):
        out = UnitWriter(str(workdir / stage), stage, index)
        sizes = [len(r["text"].encode()) for r, _, _ in unit]
        out.consumed(len(unit), sum(sizes))
        kept = [i for i, (_, reason, _) in enumerate(unit) if reason is None]
        out.keep(pa.Table.from_pylist([unit[i][0] for i in kept], schema), sum(sizes[i] for i in kept))
        for reason in sorted({r for _, r, _ in unit if r}):
            idx = [i for i, (_, r, _) in enumerate(unit) if r == reason]
            out.reject(pa.Table.from_pylist([unit[i][0] for i in idx], schema), reason, sum(sizes[i] for i in idx),
                       [unit[i][2] for i in idx])
        if index == 0:
            for e in range(errors):
                out.error(f"{stage}-input.warc.gz", 1234 + e, "truncated_gzip", "EOFError <eof>", 4000, docs=1)
                out.consumed(1, 4000)
        total.merge(StageStats.from_dict(out.close()))
    stats = {"stage": stage, "engine": engine, "seconds": 1.5, **total.to_dict(), "report": report or {}}
    (workdir / stage / "stats.json").write_text(json.dumps(stats))
    return stats


def split(rows: list, parts: int) -> list[list]:
    return [rows[k::parts] for k in range(parts)]


def make_run(workdir: Path, min_words: int = 10, parts: int = 2, engine: str = "spark") -> Path:
    docs = documents()
    write_stage(workdir, "ingest", split([(d, None if d["text"].strip() else "empty_text", None) for d in docs], parts),
                DOC_SCHEMA, engine=engine, errors=1)
    langid = [(d, "lang_other:ja" if d["lang"] == "ja" else None, "ja 0.9" if d["lang"] == "ja" else None) for d in docs]
    write_stage(workdir, "langid", split(langid, parts), DOC_SCHEMA, engine=engine)
    quality = []
    for d in (d for d, r, _ in langid if r is None):
        n_words = len(d["text"].split())
        row = {**d, "q_score": (int(d["id"][1:]) % 10) / 9, "q_n_words": n_words}
        reason = ("zh_spam_blocklist" if "<script>" in d["text"] else
                  f"{d['lang']}_min_words" if n_words < min_words else None)
        quality.append((row, reason, f"words={n_words}" if reason else None))
    write_stage(workdir, "quality", split(quality, parts), QUALITY_SCHEMA, engine=engine)
    dedup = []
    for row, reason, _ in quality:
        if reason:
            continue
        if row["id"] == "d007":
            dedup.append(({**row, "dup_cluster_id": "d004", "dup_cluster_size": 2}, "dup_exact", "d004"))
        else:
            size = 2 if row["id"] == "d004" else 1
            dedup.append(({**row, "dup_cluster_id": row["id"], "dup_cluster_size": size}, None, None))
    write_stage(workdir, "dedup", split(dedup, parts), DEDUP_SCHEMA, engine=engine)
    mix = [(row, None, None) for row, reason, _ in dedup if reason is None]
    mix += [(row, None, None) for row, _, _ in mix if row["lang"] == "zh"]  # zh upsampled: a second epoch
    mix_report = {"sources": {"web_en": {"target_tokens": 5000, "achieved_tokens": 4800, "epochs": 1.0},
                              "web_zh": {"target_tokens": 5000, "achieved_tokens": 3100, "epochs": 2.0}},
                  "warnings": ["zh short of its share: 3100 of 5000 tokens at the epoch cap"]}
    write_stage(workdir, "mix", split(mix, parts), DEDUP_SCHEMA, report=mix_report, engine=engine)
    tokens = {"en": 52000, "zh": 48000}
    shard_report = {"tokens": 100000, "loss_tokens": 31000, "sequences": 60, "mask_sequences": 18,
                    "gmask_sequences": 42, "mask_ratio_achieved": 0.154,
                    "span_length_hist": {"1": 40, "2": 80, "3": 95, "4": 70, "5": 45, "6": 22, "7": 9, "10": 1},
                    "gmask_ratio_hist": [0, 0, 12, 11, 13, 10, 12, 11, 12, 9], "tokens_per_language": tokens,
                    "tokens_per_source": {"news-en": 40000, "forum-zh": 45000, "mixed-crawl": 15000}}
    shards = workdir / "shards"
    shards.mkdir()
    (shards / "stats.json").write_text(json.dumps({
        "stage": "shards", "engine": engine, "seconds": 2.0, "in": {"docs": 10, "bytes": 400}, "kept": {"docs": 10, "bytes": 400},
        "created": {"docs": 0, "bytes": 0}, "dropped": {}, "errors": {}, "kept_text_bytes": 0, "extra": {"shards": 5},
        "profile": {}, "report": shard_report, "pii_replacements": {"email": 3, "phone": 1}}))
    (shards / "manifest.json").write_text(json.dumps({
        "format": "glm-blank-infilling", "version": 1, "seq_len": 2048, "vocab_size": 8000, "seed": 1234,
        "tokenizer": {"file": "../tokenizer/tokenizer.model", "sha256": "ab" * 32},
        "objective": {"mask_share": 0.3, "span_lambda": 3.0},
        "shards": [{"file": f"shard-{i:05d}.arrow", "samples": 12, "tokens": 20000, "loss_tokens": 6200,
                    "sha256": "0" * 64, "languages": {"en": 10400, "zh": 9600},
                    "sources": {"news-en": 8000, "forum-zh": 9000, "mixed-crawl": 3000}} for i in range(5)]}))
    return workdir


def rows_of(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def count_stats_reads(monkeypatch) -> Counter:
    """stats.json path -> how many times a command reads it from now on."""
    reads, read_text = Counter(), storage.read_text

    def counted(uri, *args, **kwargs):
        if uri.endswith("stats.json"):
            reads[uri] += 1
        return read_text(uri, *args, **kwargs)

    monkeypatch.setattr(storage, "read_text", counted)
    return reads
