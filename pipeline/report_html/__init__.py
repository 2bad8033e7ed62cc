"""The report as ONE self-contained HTML page: inline styles, static inline SVG, no scripts, and a
Content-Security-Policy that forbids fetching anything, so it opens the same with no network.

All text that came from documents or configs is escaped. Rejected-document samples sit inside
closed <details> elements: real crawl spam stays hidden until the reader asks for it.
"""
from __future__ import annotations

from html import escape

from pipeline.report import FRACTION_BINS, NONPOSITIVE_BIN, is_fraction_signal
from pipeline.report_html.svg import column_chart, fmt_number, hbar_chart, line_chart

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 24px 48px;color:#222}
h1{margin:24px 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{margin:20px 0 6px}.meta{color:#666}
table{border-collapse:collapse;margin:8px 0;display:block;overflow-x:auto}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}
.err{color:#b00020}.skip{color:#777}.grid{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:8px 0}figcaption{font-weight:600;margin-bottom:2px}
details{margin:4px 0;border:1px solid #ddd;border-radius:4px;padding:4px 8px}
summary{cursor:pointer}pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:6px;
max-height:14em;overflow:auto;font-size:12px}.note{color:#666;font-size:12px}
"""


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _title(key: str) -> str:
    return key.replace("_", " ")


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


# ---------------------------------------------------------------------------------------------
# Sections


def funnel_section(stages: list[dict]) -> str:
    if not stages:
        return "<h2>Funnel</h2><p>No finished stage has a stats.json yet.</p>"
    labels = [s["stage"] for s in stages]
    docs = hbar_chart("funnel-docs", "documents in and kept per stage", labels, {
        "in + created": [s["in"]["docs"] + s.get("created", {}).get("docs", 0) for s in stages],
        "kept": [s["kept"]["docs"] for s in stages]})
    mbytes = hbar_chart("funnel-bytes", "bytes in and kept per stage", labels, {
        "in + created": [s["in"]["bytes"] + s.get("created", {}).get("bytes", 0) for s in stages],
        "kept": [s["kept"]["bytes"] for s in stages]})
    rows = []
    for s in stages:
        src_docs = s["in"]["docs"] + s.get("created", {}).get("docs", 0)
        src_bytes = s["in"]["bytes"] + s.get("created", {}).get("bytes", 0)
        status = '<span class="skip">skipped</span>' if s.get("skipped") else f'{s.get("seconds", 0):.1f} s'
        rows.append(f'<tr><th colspan="1">{escape(s["stage"])}</th><th>{status}</th><th>{escape(s.get("engine", ""))}</th>'
                    f'<th></th><th></th><th></th></tr>')
        rows.append(f'<tr><td>in</td><td>{s["in"]["docs"]:,}</td><td>{_mb(s["in"]["bytes"])}</td><td></td><td></td><td></td></tr>')
        if s.get("created", {}).get("docs"):
            rows.append(f'<tr><td>created</td><td>{s["created"]["docs"]:,}</td><td>{_mb(s["created"]["bytes"])}</td>'
                        f'<td></td><td></td><td></td></tr>')
        rows.append(f'<tr><td>kept</td><td>{s["kept"]["docs"]:,}</td><td>{_mb(s["kept"]["bytes"])}</td>'
                    f'<td>{_pct(s["kept"]["docs"], src_docs)}</td><td>{_pct(s["kept"]["bytes"], src_bytes)}</td><td></td></tr>')
        for reason, c in sorted(s["dropped"].items(), key=lambda kv: -kv[1]["docs"]):
            rows.append(f'<tr><td>dropped: {escape(reason)}</td><td>{c["docs"]:,}</td><td>{_mb(c["bytes"])}</td>'
                        f'<td>{_pct(c["docs"], src_docs)}</td><td>{_pct(c["bytes"], src_bytes)}</td><td></td></tr>')
        for reason, c in sorted(s["errors"].items()):
            rows.append(f'<tr class="err"><td>error: {escape(reason)}</td><td>{c["docs"]:,}</td><td>{_mb(c["bytes"])}</td>'
                        f'<td>{_pct(c["docs"], src_docs)}</td><td>{_pct(c["bytes"], src_bytes)}</td><td></td></tr>')
    table = ("<table><tr><th></th><th>documents</th><th>MB</th><th>% docs</th><th>% bytes</th><th></th></tr>"
             + "".join(rows) + "</table>")
    return ("<h2>Funnel</h2><div class=grid>" + _figure("Documents per stage", docs)
            + _figure("Bytes per stage", mbytes) + "</div>" + table)


def lengths_section(lengths: dict[str, dict[str, dict]]) -> str:
    """Document length (characters, log2 bins) per language, one line per stage."""
    langs = sorted({lang for per_lang in lengths.values() for lang in per_lang})
    if not langs:
        return ""
    figs = []
    for lang in langs:
        series = {stage: per_lang[lang] for stage, per_lang in lengths.items() if lang in per_lang}
        bins = sorted({int(b) for counts in series.values() for b in counts})
        bins = list(range(bins[0], bins[-1] + 1))
        labels = [length_bin_label(b) for b in bins]
        figs.append(_figure(f"{lang}: documents by length (characters)", line_chart(
            f"lengths-{lang}", f"document lengths, {lang}", labels,
            {stage: [counts.get(str(b), counts.get(b, 0)) for b in bins] for stage, counts in series.items()},
            width=520)))
    return ("<h2>Document lengths per language</h2><p class=note>Counts per power-of-two bin of the length in "
            "characters, after each stage.</p><div class=grid>" + "".join(figs) + "</div>")


def length_bin_label(b: int) -> str:
    return "0" if b < 0 else fmt_number(2 ** b)


def dedup_section(clusters: dict) -> str:
    if not clusters:
        return ""
    present = sorted(int(b) for b in clusters)
    bins = list(range(present[0], present[-1] + 1))
    labels = ["1" if b == 0 else f"{2 ** b}–{2 ** (b + 1) - 1}" for b in bins]
    chart = column_chart("dedup-clusters", "dedup cluster sizes", labels,
                         {"clusters": [clusters.get(str(b), clusters.get(b, 0)) for b in bins]}, log_y=True)
    return ("<h2>Dedup cluster sizes</h2><p class=note>Surviving documents by the size of their duplicate cluster "
            "(1 = no duplicate).</p>" + _figure("Clusters by size", chart))


def signal_bin_label(column: str, b: int) -> str:
    if is_fraction_signal(column):
        return "≥1" if b >= FRACTION_BINS else f"{b / FRACTION_BINS:.2f}"
    return "≤0" if b == NONPOSITIVE_BIN else fmt_number(round(2 ** (b / 4), 2))


def signals_section(signals: dict[str, dict[str, dict]]) -> str:
    """One small histogram per q_* signal of the quality stage's kept documents, a series per language:
    where a threshold sits in the distribution is what tells a user whether to move it."""
    if not signals:
        return ""
    figs = []
    for column, per_lang in signals.items():
        present = sorted({int(b) for counts in per_lang.values() for b in counts})
        regular = [b for b in present if b != NONPOSITIVE_BIN]
        bins = ([NONPOSITIVE_BIN] if NONPOSITIVE_BIN in present else []) + (
            list(range(regular[0], regular[-1] + 1)) if regular else [])
        figs.append(_figure(column, column_chart(
            f"signal-{column}", column, [signal_bin_label(column, b) for b in bins],
            {lang: [counts.get(str(b), counts.get(b, 0)) for b in bins] for lang, counts in per_lang.items()},
            width=360, height=180)))
    return ("<h2>Quality signals</h2><p class=note>Kept documents of the quality stage by each <code>q_*</code> "
            "column, per language (shares and ratios in 0.05 bins; counts and lengths in quarter-octave bins, "
            "labelled by their lower edge). Re-filter on these columns without recomputing them.</p>"
            f"<details><summary>{len(signals)} signals</summary><div class=grid>" + "".join(figs) + "</div></details>")


def shards_section(manifest: dict | None, shard_report: dict) -> str:
    if not manifest:
        return ""
    shards = manifest.get("shards") or []
    parts = ["<h2>Shards</h2>"]
    split = {kind: shard_report.get(f"{kind.lower()}_sequences") for kind in ("MASK", "gMASK")}
    if all(_is_number(v) for v in split.values()):
        parts.append(_figure("Sequences by corruption: [MASK] vs [gMASK]", hbar_chart(
            "shard-kinds", "MASK/gMASK split", list(split), {"sequences": [float(v) for v in split.values()]})))
    parts.append("<table>")
    for key in ("format", "version", "seq_len", "vocab_size", "seed", "tokenizer"):
        if key in manifest and not isinstance(manifest[key], (dict, list)):
            parts.append(f"<tr><td>{escape(_title(key))}</td><td>{escape(str(manifest[key]))}</td></tr>")
    parts.append("</table>")
    if shards:
        labels = [str(i) for i in range(len(shards))]
        tokens = [s.get("tokens", 0) for s in shards]
        loss = [s.get("loss_tokens", 0) for s in shards]
        share = [(lt / t if t else 0) for lt, t in zip(loss, tokens)]
        parts.append("<div class=grid>")
        parts.append(_figure("Tokens per shard", column_chart("shard-tokens", "tokens per shard", labels,
                                                             {"tokens": tokens, "loss tokens": loss}, width=520)))
        parts.append(_figure("Loss-token share per shard", column_chart(
            "shard-loss-share", "loss-token share per shard", labels, {"loss share": share}, width=520)))
        parts.append("</div>")
        totals_t, totals_l = sum(tokens), sum(loss)
        parts.append(f"<p>{len(shards)} shards, {totals_t:,} tokens, {totals_l:,} loss tokens "
                     f"({_pct(totals_l, totals_t)}).</p>")
    rest = {k: v for k, v in manifest.items() if isinstance(v, dict)}
    parts.append(render_value("shards-manifest", rest))
    return "".join(parts)


def samples_section(samples: dict, error_samples: dict) -> str:
    if not samples and not error_samples:
        return ""
    parts = ["<h2>Samples of rejected documents</h2><p class=note>Hidden by default: rejected crawl pages can be "
             "unpleasant. Each block shows the first few documents of that reason.</p>"]
    for stage, by_reason in samples.items():
        for reason, docs in by_reason.items():
            items = "".join(
                f"<div><p><b>{escape(d.get('id') or '')}</b> {escape(d.get('url') or '')}"
                + (f" <i>{escape(d['detail'])}</i>" if d.get("detail") else "")
                + f"</p><pre>{escape(d.get('text') or '')}</pre></div>" for d in docs)
            parts.append(f"<details><summary>{escape(stage)}: {escape(reason)} ({len(docs)} shown)</summary>"
                         f"{items}</details>")
    for stage, errors in error_samples.items():
        items = "".join(f"<div><p><b>{escape(e.get('reason') or '')}</b> {escape(e.get('source_file') or '')} "
                        f"@ {escape(str(e.get('source_offset')))}</p><pre>{escape(e.get('message') or '')}</pre></div>"
                        for e in errors)
        parts.append(f"<details><summary class=err>{escape(stage)}: errors ({len(errors)} shown)</summary>"
                     f"{items}</details>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# A stage's own "report" aggregates, rendered by shape


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _target_pairs(metrics: set[str]) -> list[tuple[str, str, str]]:
    """(name, target key, achieved key) for keys such as target_tokens/achieved_tokens or tokens_target."""
    pairs = []
    for key in sorted(metrics):
        for tk, ak in ((key, key.replace("target", "achieved")), (key, key.replace("target", "actual"))):
            if "target" in key and ak != key and ak in metrics:
                pairs.append((key.replace("target", "").strip("_") or "value", tk, ak))
                break
    return pairs


def render_value(path: str, value, depth: int = 0) -> str:
    """JSON aggregates to HTML by shape: numbers -> table, {label: number} -> bars,
    {row: {metric: number}} -> table (+ target vs achieved bars), [number] -> histogram."""
    if isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
        labels = [str(k) for k in value]
        if len(labels) > 2 and all(k.lstrip("-").isdigit() for k in labels):  # a histogram keyed by value
            keys = sorted(int(k) for k in labels)
            counts = {int(k): v for k, v in value.items()}
            bins = list(range(keys[0], keys[-1] + 1)) if keys[-1] - keys[0] < 200 else keys
            return column_chart(path, path, [str(b) for b in bins], {"count": [float(counts.get(b, 0)) for b in bins]},
                                width=520)
        if len(labels) == 1:
            return f"<table><tr><td>{escape(labels[0])}</td><td>{fmt_number(list(value.values())[0])}</td></tr></table>"
        return hbar_chart(path, path, labels, {"value": [float(v) for v in value.values()]}, width=520)
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) and all(
            all(_is_number(x) or isinstance(x, str) or x is None for x in v.values()) for v in value.values()):
        rows = [str(k) for k in value]
        metrics = sorted({m for v in value.values() for m in v})
        out = ["<table><tr><th></th>" + "".join(f"<th>{escape(_title(m))}</th>" for m in metrics) + "</tr>"]
        for r, v in value.items():
            cells = "".join(f"<td>{fmt_number(v[m]) if _is_number(v.get(m)) else escape(str(v.get(m, '')))}</td>"
                            for m in metrics)
            out.append(f"<tr><td>{escape(str(r))}</td>{cells}</tr>")
        out.append("</table>")
        charts = [hbar_chart(f"{path}-{name}", f"{name}: target vs achieved", rows,
                             {"target": [float(value[r].get(tk) or 0) for r in value],
                              "achieved": [float(value[r].get(ak) or 0) for r in value]}, width=520)
                  for name, tk, ak in _target_pairs(set(metrics))]
        if charts:
            out.insert(0, "<div class=grid>" + "".join(
                _figure(f"{_title(n)}: target vs achieved", c) for (n, _, _), c in zip(_target_pairs(set(metrics)), charts))
                + "</div>")
        return "".join(out)
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        return column_chart(path, path, [str(i) for i in range(len(value))], {"count": [float(v) for v in value]},
                            width=520)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = sorted({k for v in value for k, x in v.items() if not isinstance(x, (dict, list))})
        rows = "".join("<tr>" + "".join(f"<td>{fmt_number(v[c]) if _is_number(v.get(c)) else escape(str(v.get(c, '')))}</td>"
                                         for c in cols) + "</tr>" for v in value[:200])
        return "<table><tr>" + "".join(f"<th>{escape(_title(c))}</th>" for c in cols) + "</tr>" + rows + "</table>"
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in value.items() if isinstance(v, (dict, list)) and v}
        out = []
        if scalars:
            out.append("<table>" + "".join(
                f"<tr><td>{escape(_title(str(k)))}</td><td>{fmt_number(v) if _is_number(v) else escape(str(v))}</td></tr>"
                for k, v in scalars.items()) + "</table>")
        tag = f"h{min(3 + depth, 6)}"
        for k, v in nested.items():
            out.append(f"<{tag}>{escape(_title(str(k)))}</{tag}>" + render_value(f"{path}-{k}", v, depth + 1))
        return "".join(out)
    return f"<p>{escape(str(value))}</p>"


def stage_reports_section(stages: list[dict]) -> str:
    parts = []
    for s in stages:
        report = s.get("report") or {}
        extra = {k: v for k, v in (s.get("extra") or {}).items() if v and k != "units"}
        if not report and not extra:
            continue
        parts.append(f"<h2>{escape(s['stage'])}</h2>")
        if report:
            parts.append(render_value(f"report-{s['stage']}", report))
        if extra:
            parts.append("<details><summary>stage counters</summary>" + render_value(f"extra-{s['stage']}", extra)
                         + "</details>")
    return "".join(parts)


def render_page(data: dict) -> str:
    stages = data.get("stages", [])
    body = [
        f"<h1>glmdata run report</h1><p class=meta>{escape(data.get('workdir', ''))} · generated "
        f"{escape(data.get('generated_at', ''))}</p>",
        funnel_section(stages),
        lengths_section(data.get("lengths") or {}),
        signals_section(data.get("quality_signals") or {}),
        dedup_section(data.get("dedup_clusters") or {}),
        stage_reports_section(stages),
        shards_section(data.get("shards_manifest"),
                       next((s.get("report") or {} for s in stages if s["stage"] == "shards"), {})),
        samples_section(data.get("samples") or {}, data.get("error_samples") or {}),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>glmdata report</title><style>{STYLE}</style></head><body>"
            + "".join(body) + "</body></html>\n")
