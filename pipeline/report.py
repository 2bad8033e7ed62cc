"""A run's report: a terminal summary and one self-contained HTML page (`glmdata report`, pipeline/report_command.py).

The figures come from what each stage recorded as it ran (stats.json: counts, the stage's own
"report" aggregates and the document "profile" of pipeline/doc_profile.py: per source x language x
reason counts, text bytes and tokens, histograms, seeded samples, duplicate clusters), plus the
shards manifest and the first rows of each errors/ folder. So a report reads a few small files and
starts no engine, whatever the size of the run.

A workdir written before stages recorded profiles is still reported: its histograms are recomputed
on the engine the run used (one task per Parquet file, only histograms reach the driver), and its
samples are the first rows of each rejected/ folder. Per-source figures need the profiles.

`--compare B` sets another run beside this one: what changed per stage, source, language, reason
and token count, from the two runs' profiles, and which documents moved between kept and rejected,
found by a join of the two runs' document ids on the engine (pipeline/report_compare.py).

A stage that finished before a stage upstream of it re-ran (by the times in their _SUCCESS) is
marked stale: its figures describe an input that has been replaced.
"""
from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline import doc_profile, storage
from pipeline.doc_profile import CLUSTER_SIZE_COLUMN, KEPT, SIGNAL_STAGES, shown_names
from pipeline.report_html import render_page
from pipeline.report_terminal import SAMPLE_STAGES
from pipeline.report_text import docs_in, plain, readable_bytes, visible
from pipeline.runner import SUCCESS, StageNotReady, marker_key, read_stats, read_success
from pipeline.stages import STAGE_ORDER

SAMPLES_PER_REASON = 3
SAMPLE_CHARS = 600
SHINGLE = 5  # characters per shingle of the similarity shown beside duplicate examples
SIDE_STAGES = tuple(SAMPLE_STAGES)  # not filters of the flow: their "dropped" rows are a sample choice
FLOW = [n for n in STAGE_ORDER if n != "report"]  # the stages that write <workdir>/<stage>/
REPORTED_COUNTS = ("in", "kept", "dropped", "errors")  # what the report's tables need of every stats.json


# ---------------------------------------------------------------------------------------------
# Recomputed on the engine, for workdirs written before stages recorded profiles


@dataclass
class HistogramTask:
    """Runs on a worker: one Parquet file of kept documents in, the profile's distributions out
    ({"lengths", "clusters", "signals"}, by doc_profile.record_histograms, as a stage records them)."""

    batch_size: int = 8192

    def __call__(self, unit: tuple[str, str]) -> dict:
        stage, path = unit
        pf = pq.ParquetFile(storage.open_input(path))
        prefix = SIGNAL_STAGES.get(stage)
        columns = [f.name for f in pf.schema_arrow if f.name in ("text", "lang", CLUSTER_SIZE_COLUMN)
                   or (prefix and f.name.startswith(prefix))]
        profile = doc_profile.empty_profile()
        if "text" in columns:
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=columns):
                doc_profile.record_histograms(profile, pa.Table.from_batches([batch]), stage)
        return {"stage": stage, **{k: profile[k] for k in ("lengths", "clusters", "signals")}}


def _by_bin(counts: Counter | dict) -> dict:
    return dict(sorted(((str(k), v) for k, v in counts.items()), key=lambda kv: int(kv[0])))


def document_histograms(workdir: str, stages: list[str], engine) -> tuple[dict, dict, dict]:
    """Length histograms per stage and language, dedup cluster sizes, and the quality signals'
    histograms per language, computed on the engine."""
    units = [(stage, path) for stage in stages
             for path in storage.expand(storage.join(workdir, stage, "data")) if path.endswith(".parquet")]
    if not units or engine is None:
        return {}, {}, {}
    lengths: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    clusters: Counter = Counter()
    signals: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for result in engine.map_units("report histograms", HistogramTask(), units):
        for lang, counts in result["lengths"].items():
            lengths[result["stage"]][lang].update(counts)
        clusters.update(result["clusters"])
        for column, per_lang in result["signals"].items():
            for lang, counts in per_lang.items():
                signals[column][lang].update(counts)
    ordered = {s: {lang: _by_bin(c) for lang, c in sorted(lengths[s].items())} for s in stages if s in lengths}
    return (ordered, _by_bin(clusters),
            {col: {lang: _by_bin(c) for lang, c in sorted(per_lang.items())} for col, per_lang in sorted(signals.items())})


# ---------------------------------------------------------------------------------------------
# Driver-side reads of small things


def read_stage_stats(workdir: str, required: tuple[str, ...] = REPORTED_COUNTS) -> list[dict]:
    """stats.json of every stage in the workdir: data-flow order first, then any other stage by name; `required`:
    the counts each must have (read_counts)."""
    names = FLOW + sorted(n for n in storage.listdir(workdir) if n not in FLOW and not n.startswith((".", "_")))
    found = (read_counts(storage.join(workdir, n), (*required, "stage")) for n in names)  # listed by its name
    return [stats for stats in found if stats is not None]


def read_counts(stage_dir: str, required: tuple[str, ...] = REPORTED_COUNTS) -> dict | None:
    """A stage's stats.json (None when it has none), refused by name when one of its counts is not a count or
    one of `required` is missing (inspect needs only the drops, which a stage without any may leave out)."""
    stats = read_stats(stage_dir)
    return None if stats is None else checked_counts(stats, storage.join(stage_dir, "stats.json"), required)


def _is_count(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _is_docs_and_bytes(counts) -> bool:
    return isinstance(counts, dict) and all(_is_count(counts.get(k)) for k in ("docs", "bytes"))


def _is_per_reason(per_reason) -> bool:
    return isinstance(per_reason, dict) and all(map(_is_docs_and_bytes, per_reason.values()))


DOCS_AND_BYTES = (_is_docs_and_bytes, '{"docs": n, "bytes": n}')
PER_REASON = (_is_per_reason, '{reason: {"docs": n, "bytes": n}}')
STATS_SHAPES = {"in": DOCS_AND_BYTES, "kept": DOCS_AND_BYTES, "created": DOCS_AND_BYTES, "dropped": PER_REASON,
                "errors": PER_REASON, "seconds": (_is_count, "a number"), "kept_text_bytes": (_is_count, "a number"),
                "stage": (lambda value: isinstance(value, str), "the stage's name")}


def checked_counts(stats: dict, path: str, required: tuple[str, ...]) -> dict:
    """`stats` when its figures are counts and `required` ones are there; else refused naming the file and the
    key (a hand edit, or a writer that put NaN or a string there), not a KeyError or a "nan" in the page."""
    problems = [f"{key} is {json.dumps(stats[key])[:200] if key in stats else 'missing'}, expected {expected}"
                for key, (is_shape, expected) in STATS_SHAPES.items()
                if (key in stats or key in required) and not is_shape(stats.get(key))]
    if problems:
        raise StageNotReady(f"{path}: {'; '.join(problems)}; the stage's output is damaged: re-run it with --force")
    return stats


def unfinished_stages(workdir: str) -> list[str]:
    """Stages of the flow with a folder but no _SUCCESS: running, crashed or half copied."""
    return [n for n in FLOW if storage.is_dir(storage.join(workdir, n))
            and not storage.exists(storage.join(workdir, n, SUCCESS))]


def stale_stages(workdir: str) -> dict[str, str]:
    """{stage: the stage whose replaced output it was built from}, in flow order. Each _SUCCESS records
    the markers of the outputs its stage read (`inputs`); a stage is stale when one of them no longer
    matches (e.g. `glmdata quality --force --set ...` after pii had run: pii, and through it every stage
    after it) or when it read a stale stage's output. A re-run that rebuilt the same output (same config,
    same input) makes nothing stale; an upstream folder deleted since (no marker) is not judged. A marker
    written before `inputs` was recorded is judged by time: stale when a stage before it in the flow
    finished after it."""
    markers = {name: read_success(storage.join(workdir, name)) for name in FLOW}
    stale: dict[str, str] = {}
    latest = ("", "")  # (stage, finished_at) of the last-finished stage so far, for markers without inputs
    for name, marker in markers.items():
        if marker is None:
            continue
        if "inputs" not in marker and latest[1] > (marker.get("finished_at") or ""):
            stale[name] = stale.get(latest[0], latest[0])
        for read, key in (marker.get("inputs") or {}).items():
            if read in stale:
                stale[name] = stale[read]
            elif markers.get(read) is not None and marker_key(markers[read]) != key:
                stale[name] = read
            if name in stale:
                break
        if (marker.get("finished_at") or "") > latest[1]:
            latest = (name, marker["finished_at"])
    return stale


def stage_cell(name: str, stale: dict[str, str]) -> str:
    """A stage's name in a table (rich markup), marked when it is stale (stale_note says why)."""
    return f"{plain(name)} [yellow](stale)[/yellow]" if name in stale else plain(name)


def stale_note(stale: dict[str, str]) -> str:
    first, upstream = next(iter(stale)), ", ".join(dict.fromkeys(stale.values()))
    return (f"[yellow]stale: {', '.join(stale)} built from an output of {upstream} that has been replaced since; "
            f"re-run from {first}: glmdata run --config <config> --from {first}[/yellow]")


def unfinished_note(unfinished: list[str]) -> str:
    return (f"[yellow]not finished (no _SUCCESS: running, failed or half copied): {', '.join(unfinished)}; "
            "their figures are missing or partial[/yellow]")


def has_profile(stats: dict) -> bool:
    return "profile" in stats


def document_stages(stages: list[dict]) -> list[dict]:
    """Stages whose kept output is documents with text (the ones with length histograms)."""
    return [s for s in stages if s["stage"] not in ("ingest", "tokenizer", "encode", "shards")]


def run_engine(stages: list[dict]) -> str:
    """The engine most of the run's stages ran on (the one to recompute with)."""
    names = Counter(s.get("engine") for s in stages if s.get("engine"))
    return names.most_common(1)[0][0] if names else "spark"


def _first_rows(path: str, columns: list[str], n: int) -> list[dict]:
    pf = pq.ParquetFile(storage.open_input(path))
    cols = [c for c in columns if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=n, columns=cols):
        return batch.to_pylist()
    return []


def error_samples(workdir: str, stages: list[dict]) -> dict[str, list]:
    """The first rows of each stage's errors/ (error rows are few and small)."""
    errors: dict[str, list] = {}
    for s in stages:
        if not s.get("errors"):
            continue
        files = [p for p in storage.expand(storage.join(workdir, s["stage"], "errors")) if p.endswith(".parquet")]
        rows = [r for f in files for r in _first_rows(f, ["source_file", "source_offset", "reason", "message", "doc_id"],
                                                       SAMPLES_PER_REASON)][:SAMPLES_PER_REASON]
        if rows:
            errors[s["stage"]] = [shown_names({**r, "message": (r.get("message") or "")[:SAMPLE_CHARS]}) for r in rows]
    return errors


def legacy_rejected_samples(workdir: str, stage: str) -> dict[str, dict[str, list]]:
    """For workdirs without profiles: the first rows of each rejected/ folder, as {reason: {lang: rows}}."""
    out: dict[str, dict[str, list]] = {}
    rejected = storage.join(workdir, stage, "rejected")
    for slug in storage.listdir(rejected):
        files = [p for p in storage.expand(storage.join(rejected, slug)) if p.endswith(".parquet")]
        if not files:
            continue
        rows = _first_rows(files[0], ["id", "url", "source", "lang", "text", "reject_reason", "reject_detail"],
                           SAMPLES_PER_REASON)
        reason = (rows[0].get("reject_reason") if rows else None) or slug
        for r in rows:
            text = r.get("text") or ""
            out.setdefault(reason, {}).setdefault(r.get("lang") or doc_profile.UNKNOWN, []).append(shown_names(
                {"id": r.get("id"), "url": r.get("url"), "source": r.get("source"), "detail": r.get("reject_detail"),
                 "chars": len(text), "text": text[:SAMPLE_CHARS]}))
    return out


def shards_manifest(workdir: str) -> dict | None:
    for candidate in ("shards/manifest.json", "shards/data/manifest.json"):
        path = storage.join(workdir, *candidate.split("/"))
        if storage.exists(path):
            return json.loads(storage.read_text(path))
    return None


# ---------------------------------------------------------------------------------------------
# Figures from the profiles


def shingle_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character 5-gram sets of two whitespace-normalized texts."""
    def grams(text: str) -> set[str]:
        t = re.sub(r"\s+", " ", text).strip()
        return {t[i:i + SHINGLE] for i in range(max(len(t) - SHINGLE + 1, 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb) if ga or gb else 1.0


def duplicate_examples(profile: dict) -> list[dict]:
    """Survivors beside their duplicates (same cluster), with the similarity of the shown texts."""
    dup = profile.get("duplicates") or {}
    survivors = {row["cluster"]: row for _, row in dup.get("survivors", [])}
    clusters: dict[str, list] = defaultdict(list)
    for _, row in dup.get("duplicates", []):
        clusters[row["cluster"]].append(row)
    out = []
    for cluster, members in clusters.items():
        survivor = survivors.get(cluster)
        for m in members:
            m["similarity"] = (round(shingle_similarity(survivor.get("text") or "", m.get("text") or ""), 3)
                               if survivor else None)
        out.append({"cluster": cluster, "survivor": survivor, "duplicates": members})
    return out


def breakdown(stages: list[dict]) -> dict[str, dict]:
    """{stage: {"source"|"lang": {"kept"|reason: {name: [documents, text bytes, tokens]}}}}."""
    return {s["stage"]: {by: doc_profile.group_totals(s["profile"], by) for by in ("source", "lang")}
            for s in stages if has_profile(s) and s["profile"].get("groups")}


def per_name(stages: list[dict], by: str, shard_tokens: dict) -> dict[str, dict]:
    """Per source (or language): kept [documents, text bytes, tokens] at every stage, drops by
    stage and reason, tokens in the shards, and (sources) the mix's epochs: mix text bytes over
    the text bytes its upstream kept."""
    out: dict[str, dict] = {}
    flow = [s for s in stages if has_profile(s) and s["profile"].get("groups") and s["stage"] not in SIDE_STAGES]
    for s in flow:
        for outcome, names in doc_profile.group_totals(s["profile"], by).items():
            for name, values in names.items():
                entry = out.setdefault(name, {"stages": {}, "dropped": {}, "shard_tokens": None, "mix_epochs": None})
                if outcome == KEPT:
                    entry["stages"][s["stage"]] = values
                else:
                    entry["dropped"][f"{s['stage']}: {outcome}"] = values
    names_in_flow = [s["stage"] for s in flow]
    for name, entry in out.items():
        entry["shard_tokens"] = shard_tokens.get(name)
        # The token stream the shards pack: the last stage's tokens plus one <eos> per document
        # (the shards count by mix source and language; this is the figure per input source).
        with_tokens = [v for v in entry["stages"].values() if v[2]]
        entry["stream_tokens"] = with_tokens[-1][2] + with_tokens[-1][0] if with_tokens else None
        if "mix" in entry["stages"] and "mix" in names_in_flow and names_in_flow.index("mix") > 0:
            upstream = entry["stages"].get(names_in_flow[names_in_flow.index("mix") - 1])
            if upstream and upstream[1]:
                entry["mix_epochs"] = round(entry["stages"]["mix"][1] / upstream[1], 4)
        entry["top_drops"] = sorted(entry["dropped"].items(), key=lambda kv: -kv[1][0])[:3]
    return dict(sorted(out.items()))


def collect(workdir: str, engine_factory=None, stages: list[dict] | None = None) -> dict:
    """Everything the page shows. `engine_factory()` gives an engine, called only for a workdir
    whose stages recorded no profile. `stages`: the workdir's read_stage_stats where the caller has read
    them already (each stats.json is read once: a stage finishing meanwhile would make two reads disagree)."""
    stages = read_stage_stats(workdir) if stages is None else stages
    legacy = [s["stage"] for s in document_stages(stages) if not has_profile(s)]
    lengths = {s["stage"]: s["profile"]["lengths"] for s in document_stages(stages)
               if has_profile(s) and s["profile"].get("lengths")}
    by_stage = {s["stage"]: s for s in stages}
    dedup_profile = by_stage.get("dedup", {}).get("profile") or {}
    clusters = _by_bin(dedup_profile.get("clusters") or {})
    signals = {}
    for stage in SIGNAL_STAGES:
        signals.update((by_stage.get(stage, {}).get("profile") or {}).get("signals") or {})
    recomputed_on = None
    if legacy and engine_factory is not None:
        engine = engine_factory()
        recomputed_on = engine.name
        old_lengths, old_clusters, old_signals = document_histograms(workdir, legacy, engine)
        lengths.update(old_lengths)
        clusters = clusters or old_clusters
        signals = signals or old_signals
    lengths = {s["stage"]: lengths[s["stage"]] for s in stages if s["stage"] in lengths}
    samples = {}
    for s in stages:
        if has_profile(s):
            found = {outcome: {lang: [shown_names(row) for _, row in entries] for lang, entries in sorted(per_lang.items())}
                     for outcome, per_lang in (s["profile"].get("samples") or {}).items()}
        else:
            found = legacy_rejected_samples(workdir, s["stage"])
        if found:
            samples[s["stage"]] = dict(sorted(found.items(), key=lambda kv: (kv[0] != KEPT, kv[0])))
    shard_report = by_stage.get("shards", {}).get("report") or {}
    return {
        "workdir": workdir, "generated_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "engine": run_engine(stages), "recomputed_on": recomputed_on, "legacy_stages": legacy,
        "stages": [{k: v for k, v in s.items() if k != "profile"} for s in stages], "stale": stale_stages(workdir),
        "unfinished": unfinished_stages(workdir),
        "side_stages": [s["stage"] for s in stages if s["stage"] in SIDE_STAGES],
        "breakdown": breakdown(stages),
        "sources": per_name(stages, "source", shard_report.get("tokens_per_source") or {}),
        "languages": per_name(stages, "lang", shard_report.get("tokens_per_language") or {}),
        "lengths": lengths, "dedup_clusters": clusters, "quality_signals": signals,
        "duplicate_examples": duplicate_examples(dedup_profile),
        "shards_manifest": shards_manifest(workdir), "samples": samples,
        "error_samples": error_samples(workdir, stages),
    }


# ---------------------------------------------------------------------------------------------
# Output


def print_summary(data: dict, html_path: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"glmdata run: {plain(data['workdir'])}", show_edge=False)
    for col in ("stage", "time", "docs in", "kept", "text kept", "dropped", "errors"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=col == "stage")
    stale = data.get("stale") or {}
    for s in data["stages"]:
        dropped = sum(c["docs"] for c in s["dropped"].values())
        errors = sum(c["docs"] for c in s["errors"].values())
        table.add_row(stage_cell(s["stage"], stale), "skipped" if s.get("skipped") else f"{s.get('seconds', 0):.1f} s",
                      docs_in(s), f"{s['kept']['docs']:,}",
                      readable_bytes(s.get("kept_text_bytes") or None),  # encode and shards keep token ids only
                      f"{dropped:,}" + (" (sample choice)" if s["stage"] in SIDE_STAGES else ""),
                      f"[red]{errors:,}[/red]" if errors else "0")
    console.print(table)
    if stale:
        console.print(stale_note(stale), soft_wrap=True)
    if data.get("unfinished"):
        console.print(unfinished_note(data["unfinished"]), soft_wrap=True)
    if data.get("sources"):
        console.print(source_table(data["sources"]))
    manifest = data.get("shards_manifest")
    if manifest and manifest.get("shards"):
        tokens = sum(s.get("tokens", 0) for s in manifest["shards"])
        console.print(f"shards: {len(manifest['shards'])} files, {tokens:,} tokens")
    if data.get("recomputed_on"):
        console.print(f"[yellow]stages without recorded profiles ({plain(', '.join(data['legacy_stages']))}): histograms "
                      f"recomputed on {data['recomputed_on']}; re-run them for per-source figures[/yellow]")
    console.print(Text.assemble("HTML report: ", (visible(html_path), "bold")))


def source_table(sources: dict) -> Table:
    """Per input source: documents at the first and last stage, text, tokens, the main drop reason."""
    table = Table(title="per source", show_edge=False)
    for col in ("source", "docs first", "docs last", "text last", "tokens", "most dropped by"):
        table.add_column(col, justify="left" if col in ("source", "most dropped by") else "right")
    for name, e in sources.items():
        counts = list(e["stages"].values())
        with_text = [v for v in counts if v[1]]
        top = e.get("top_drops") or []
        table.add_row(plain(name), f"{counts[0][0]:,}" if counts else "–", f"{counts[-1][0]:,}" if counts else "–",
                      readable_bytes(with_text[-1][1]) if with_text else "–",
                      f"{(e.get('shard_tokens') or e.get('stream_tokens') or 0):,}",
                      f"{plain(top[0][0])} ({top[0][1][0]:,})" if top else "–")
    return table


def write_report(workdir: str, engine=None, console: Console | None = None, engine_factory=None,
                 out: str | None = None) -> str:
    """Collect, write `out` (default <workdir>/report)/{report.html,report.json}, print the summary; return
    the HTML path. An engine (`engine`, else one from `engine_factory`) is used only for stages without
    profiles."""
    data = collect(workdir, (lambda: engine) if engine is not None else engine_factory)
    return write_collected(data, out or storage.join(workdir, "report"), console)


def write_collected(data: dict, out: str, console: Console | None = None) -> str:
    """Write `out`/{report.html,report.json} from collect's `data`, print the summary; return the HTML path."""
    storage.write_text(storage.join(out, "report.json"), json.dumps(data, indent=1, sort_keys=True, default=str))
    html_path = storage.join(out, "report.html")
    storage.write_text(html_path, render_page(data))
    print_summary(data, html_path, console)
    return html_path
