"""`glmdata report A --compare B`: two runs side by side, what a user needs after changing a threshold.

Changes per stage, reason, source, language and token count come from the two runs' recorded
profiles (no pass over the data). Which documents moved between kept and rejected needs the two
runs' document ids: per stage, the (id, status) rows of A and of B (status: "kept" or the drop
reason; "absent" when the stage did not write the document, e.g. an earlier stage dropped it) are
joined on (stage, id) on the engine (a Spark DataFrame join, or a Beam GroupByKey); only the number of
documents per (status in A, status in B) and the few with the smallest seeded keys reach the
driver. A last engine pass over the stage's files fetches those few documents' text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.doc_profile import KEPT, SAMPLE_CHARS, sample_key
from pipeline.report import FLOW, SIDE_STAGES
from pipeline.report_html import render_compare_page

ABSENT = "absent"
MOVED_SAMPLES = 5  # documents shown per (status in A, status in B)
PREVIEW_COLUMNS = ("id", "url", "source", "lang", "text", "reject_reason", "reject_detail")


def _parquet(folder: str) -> list[str]:
    return [p for p in storage.expand(folder) if p.endswith(".parquet")]


@dataclass(frozen=True)
class StatusFiles:
    """The Parquet files of one stage of one run, and the status their rows have."""

    stage: str
    run: str  # "a" or "b"
    status_column: str | None  # None: kept (data/); else the column holding the drop reason
    files: tuple[str, ...]


def status_files(workdir: str, run: str, stage: str) -> list[StatusFiles]:
    rejected = storage.join(workdir, stage, "rejected")
    return [StatusFiles(stage, run, None, tuple(_parquet(storage.join(workdir, stage, "data")))),
            StatusFiles(stage, run, "reject_reason", tuple(
                p for slug in storage.listdir(rejected) for p in _parquet(storage.join(rejected, slug))))]


def _has_ids(groups: list[StatusFiles]) -> bool:
    files = [f for g in groups for f in g.files]
    return bool(files) and "id" in pq.ParquetFile(storage.open_input(files[0])).schema_arrow.names


def _moved_pair(item):
    """((stage, id), [(run, status), ...]) -> ((stage, status in A, status in B), id) when they differ."""
    (stage, doc_id), statuses = item
    by_run = {"a": ABSENT, "b": ABSENT}
    for run, status in statuses:
        by_run[run] = status
    if by_run["a"] != by_run["b"]:
        yield (stage, by_run["a"], by_run["b"]), doc_id


# ---------------------------------------------------------------------------------------------
# The id join, on the engine: every stage at once, keyed by (stage, id)


def spark_moved(spark, groups: list[StatusFiles]) -> tuple[dict, dict]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipeline.engines.spark_storage import read_parquet  # not spark.read: s3:// outside EMR

    frames = {"a": [], "b": []}
    for g in groups:
        if g.files:
            status = F.col(g.status_column) if g.status_column else F.lit(KEPT)
            columns = ["id"] + ([g.status_column] if g.status_column else [])
            frames[g.run].append(read_parquet(spark, list(g.files), columns=columns)
                                 .select(F.lit(g.stage).alias("stage"), "id", status.alias(g.run)))
    statuses = {}
    for run, parts in frames.items():
        frame = parts[0]
        for f in parts[1:]:
            frame = frame.unionByName(f)
        statuses[run] = frame.distinct()  # the mix repeats documents
    moved = (statuses["a"].join(statuses["b"], ["stage", "id"], "full_outer").fillna({"a": ABSENT, "b": ABSENT})
             .where(F.col("a") != F.col("b")))
    counts = {(r["stage"], r["a"], r["b"]): r["count"] for r in moved.groupBy("stage", "a", "b").count().collect()}
    key = F.udf(lambda doc_id: sample_key(doc_id), "long", useArrow=False)  # on the moved documents only
    order = Window.partitionBy("stage", "a", "b").orderBy(key("id"), "id")
    picked = (moved.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= MOVED_SAMPLES)
              .select("stage", "id", "a", "b").collect())
    samples: dict = {}
    for r in picked:
        samples.setdefault((r["stage"], r["a"], r["b"]), []).append(r["id"])
    return counts, samples


def beam_moved(engine, groups: list[StatusFiles]) -> tuple[dict, dict]:
    import apache_beam as beam
    from apache_beam.io.parquetio import ReadAllFromParquet

    def statuses(g: StatusFiles):
        return [(path, g) for path in g.files]

    def keyed(row_and_group):
        row, g = row_and_group
        return (g.stage, row["id"]), (g.run, row[g.status_column] if g.status_column else KEPT)

    out = engine.scratch_dir("compare")
    with engine.pipeline() as p:
        pairs = []
        for i, g in enumerate(x for x in groups if x.files):
            columns = ["id"] + ([g.status_column] if g.status_column else [])
            pairs.append(p | f"files {i}" >> beam.Create(list(g.files))
                         | f"read {i}" >> ReadAllFromParquet(columns=columns)
                         | f"status {i}" >> beam.Map(lambda row, g=g: keyed((row, g))))
        moved = (pairs | "all" >> beam.Flatten() | "by stage and id" >> beam.GroupByKey()
                 | "moved" >> beam.FlatMap(_moved_pair))
        (moved | "count" >> beam.combiners.Count.PerKey()
         | "count json" >> beam.Map(lambda kv: json.dumps({"key": kv[0], "count": kv[1]}))
         | "write counts" >> beam.io.WriteToText(storage.join(out, "counts"), file_name_suffix=".jsonl"))
        (moved | "keyed" >> beam.Map(lambda kv: (kv[0], (sample_key(kv[1]), kv[1])))
         | "smallest" >> beam.combiners.Top.SmallestPerKey(MOVED_SAMPLES)
         | "samples json" >> beam.Map(lambda kv: json.dumps({"key": kv[0], "ids": [i for _, i in kv[1]]}))
         | "write samples" >> beam.io.WriteToText(storage.join(out, "samples"), file_name_suffix=".jsonl"))
    counts, samples = {}, {}
    for path in storage.expand(out):
        for line in storage.read_text(path).splitlines():
            if line.strip():
                r = json.loads(line)
                if "count" in r:
                    counts[tuple(r["key"])] = r["count"]
                else:
                    samples[tuple(r["key"])] = r["ids"]
    storage.rmtree(out)
    return counts, samples


@dataclass
class FetchRows:
    """One Parquet file in, the rows of the wanted ids out (text cut to SAMPLE_CHARS); reads the id
    column, and the other columns only of a file that holds one of them."""

    ids: tuple

    def __call__(self, unit: tuple[str, str, str]) -> dict:
        stage, run, path = unit
        pf = pq.ParquetFile(storage.open_input(path))
        mask = pc.is_in(pf.read(columns=["id"]).column("id"), value_set=pa.array(self.ids, pa.string()))
        rows = []
        if pc.any(mask).as_py():
            columns = [c for c in PREVIEW_COLUMNS if c in pf.schema_arrow.names]
            for r in pf.read(columns=columns).filter(mask).to_pylist():
                text = r.get("text") or ""
                rows.append({**r, "chars": len(text), "text": text[:SAMPLE_CHARS]})
        return {"stage": stage, "run": run, "rows": rows}


def moved_documents(workdir_a: str, workdir_b: str, stages: list[str], engine) -> dict[str, list[dict]]:
    """{stage: [{"a": status, "b": status, "documents": n, "samples": [{"id", "a": row, "b": row}]}]}."""
    groups = []
    for stage in stages:
        both = status_files(workdir_a, "a", stage) + status_files(workdir_b, "b", stage)
        if _has_ids([g for g in both if g.run == "a"]) and _has_ids([g for g in both if g.run == "b"]):
            groups += both
    if not groups:
        return {}
    counts, picked = spark_moved(engine.spark, groups) if engine.name == "spark" else beam_moved(engine, groups)
    wanted = tuple(sorted({i for ids in picked.values() for i in ids}))
    rows: dict[tuple[str, str], dict] = {}
    if wanted:
        units = [(g.stage, g.run, path) for g in groups for path in g.files]
        for found in engine.map_units("compare: sample documents", FetchRows(wanted), units):
            for r in found["rows"]:
                rows.setdefault((found["stage"], found["run"], r["id"]), r)
    out: dict[str, list[dict]] = {stage: [] for stage in stages if any(g.stage == stage for g in groups)}
    for (stage, a, b), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1:])):
        ids = sorted(picked.get((stage, a, b), []), key=lambda i: (sample_key(i), i))
        out[stage].append({"a": a, "b": b, "documents": n, "samples": [
            {"id": i, "a": rows.get((stage, "a", i)), "b": rows.get((stage, "b", i))} for i in ids]})
    return out


def _delta_table(a: dict, b: dict, ran: tuple[set, set] | None = None) -> list[dict]:
    """Rows of {name, a: [docs, bytes, tokens], b: [...]} for every name of either side, changed first.
    With `ran` (the stages each side ran), a stage a side did not run is None there, not zero."""
    def side(counts: dict, stages: set | None, name: str):
        return None if stages is not None and name not in stages else counts.get(name) or [0, 0, 0]

    rows = [{"name": n, "a": side(a, ran and ran[0], n), "b": side(b, ran and ran[1], n)} for n in set(a) | set(b)]
    return sorted(rows, key=lambda r: (-abs(((r["b"] or [0])[0]) - ((r["a"] or [0])[0])), r["name"]))


def compare_runs(a: dict, b: dict) -> dict:
    """Changes between two collected reports (pipeline.report.collect)."""
    stages_a = {s["stage"]: s for s in a["stages"]}
    stages_b = {s["stage"]: s for s in b["stages"]}
    per_stage = []
    in_flow = {name: i for i, name in enumerate(FLOW)}  # a stage run in one of the runs only is still in its place
    for name in sorted(set(stages_a) | set(stages_b), key=lambda n: (in_flow.get(n, len(FLOW)), n)):
        sa, sb = stages_a.get(name), stages_b.get(name)
        reasons = {}
        for side, s in (("a", sa), ("b", sb)):
            for reason, c in (s or {}).get("dropped", {}).items():
                # a side that did not run the stage has None, not 0 (the page says "not run")
                reasons.setdefault(reason, {"a": None if sa is None else 0, "b": None if sb is None else 0})[side] = c["docs"]
        per_stage.append({"stage": name, "kept": [(s or {}).get("kept", {}).get("docs") for s in (sa, sb)],
                          "kept_text_bytes": [(s or {}).get("kept_text_bytes") for s in (sa, sb)],
                          "reasons": dict(sorted(reasons.items(), key=lambda kv: -abs((kv[1]["b"] or 0) - (kv[1]["a"] or 0))))})
    by_name = {}
    for by in ("sources", "languages"):
        rows = {}
        for name in sorted(set(a[by]) | set(b[by])):
            ea, eb = a[by].get(name, {}), b[by].get(name, {})
            rows[name] = {"stages": _delta_table(ea.get("stages", {}), eb.get("stages", {}), (set(stages_a), set(stages_b))),
                          "dropped": _delta_table(ea.get("dropped", {}), eb.get("dropped", {})),
                          "shard_tokens": [ea.get("shard_tokens"), eb.get("shard_tokens")],
                          "stream_tokens": [ea.get("stream_tokens"), eb.get("stream_tokens")]}
        by_name[by] = rows
    tokens = [((x.get("shards_manifest") or {}).get("totals") or {}).get("tokens") for x in (a, b)]
    return {"a": a["workdir"], "b": b["workdir"], "stages": per_stage, **by_name, "shard_tokens": tokens}


def write_comparison(a: dict, b: dict, engine_factory, out: str | None = None) -> str:
    """Write `out` (default <A>/report)/compare.{json,html} from the two runs' collected reports
    (pipeline.report.collect); return the HTML path."""
    workdir_a, workdir_b = a["workdir"], b["workdir"]
    data = compare_runs(a, b)
    flow = [s["stage"] for s in a["stages"] if s["stage"] not in SIDE_STAGES
            and s["stage"] in {t["stage"] for t in b["stages"]}]
    data["moved"] = moved_documents(workdir_a, workdir_b, flow, engine_factory())
    out = out or storage.join(workdir_a, "report")
    storage.write_text(storage.join(out, "compare.json"), json.dumps(data, indent=1, sort_keys=True, default=str))
    html_path = storage.join(out, "compare.html")
    storage.write_text(html_path, render_compare_page(data))
    per_stage = {stage: sum(t["documents"] for t in ts) for stage, ts in data["moved"].items()}
    print(f"compare: {sum(per_stage.values()):,} documents changed status between {workdir_a} and {workdir_b} "
          f"({', '.join(f'{stage} {n:,}' for stage, n in per_stage.items())})")
    print(f"compare report: {html_path}")
    return html_path
