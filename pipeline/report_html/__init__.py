"""The report as ONE self-contained HTML page: inline styles, static inline SVG, no scripts, and a
Content-Security-Policy that forbids fetching anything, so it opens the same with no network.

All text that came from documents or configs is escaped, its control characters (ANSI, bidi
overrides) written as escapes by pipeline/report_text.py. Document samples sit inside closed
<details> elements, and those of reasons that catch adult or spam pages sit behind a second click,
blurred: real crawl spam stays hidden until the reader asks for it. Every table sits in a
horizontally scrolling container and every chart scales to the column, so nothing is wider than
the page, on a laptop or a phone.

Input: the dict of pipeline.report.collect (and pipeline.report_compare.compare_runs for the
comparison page); this package imports nothing from pipeline.report.
"""
from __future__ import annotations


from pipeline.doc_profile import FRACTION_BINS, KEPT, NONPOSITIVE_BIN, UNKNOWN, is_fraction_signal
from pipeline.report_html.svg import column_chart, fmt_number, hbar_chart, line_chart, waterfall_chart
from pipeline.report_text import escape_html as escape  # also shows control characters
from pipeline.report_text import docs_in, readable_bytes  # the terminal's units

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# Reasons whose samples are likely adult or spam pages: behind a second click, blurred.
FLAGGED_REASON_WORDS = ("adult", "porn", "nsfw", "blocklist", "spam", "url")
# stats.json keys every stage has; any other key (a new stage's) is rendered by shape.
KNOWN_STATS_KEYS = {"stage", "engine", "seconds", "in", "created", "kept", "dropped", "errors", "kept_text_bytes",
                    "extra", "report", "skipped"}

STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px 48px;color:#222;
overflow-wrap:anywhere}
h1{margin:24px 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{margin:20px 0 6px}.meta{color:#666}nav a{margin-right:10px;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%;margin:8px 0}
table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;
white-space:nowrap}th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}
td.wrap{white-space:normal;text-align:left;min-width:12em}
tr.total td{font-weight:600;border-top:1px solid #999}
.err{color:#b00020}.skip{color:#777}.up{color:#1a7f37}.down{color:#b00020}
.grid{display:flex;flex-wrap:wrap;gap:18px}.grid>*{min-width:0;max-width:100%}
svg.chart{max-width:100%;height:auto}
figure{margin:8px 0}figcaption{font-weight:600;margin-bottom:2px}
details{margin:4px 0;border:1px solid #ddd;border-radius:4px;padding:4px 8px}
summary{cursor:pointer}pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:6px;
max-height:14em;overflow:auto;font-size:12px;margin:4px 0}.note{color:#666;font-size:12px}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.blur pre{filter:blur(5px)}.blur pre:hover{filter:none}
"""


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _title(key: str) -> str:
    return key.replace("_", " ")


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _int(n) -> str:
    return "–" if n is None else f"{int(n):,}"


def _table(header: list[str], rows: list[list[str]], total: list[str] | None = None) -> str:
    """A table in a scrolling container; cells are HTML already escaped by the caller."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    foot = ("<tr class=total>" + "".join(f"<td>{c}</td>" for c in total) + "</tr>") if total else ""
    return f"<div class=scroll><table>{head}{body}{foot}</table></div>"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v) -> str:
    return fmt_number(v) if _is_number(v) else escape("" if v is None else str(v))


# ---------------------------------------------------------------------------------------------
# Funnel


def _source_docs(s: dict) -> int:
    return s["in"]["docs"] + s.get("created", {}).get("docs", 0)


def funnel_section(data: dict) -> str:
    stages = data.get("stages", [])
    unfinished = data.get("unfinished") or []
    note = (f"<p class=err>Stages not finished (no _SUCCESS: running, failed or half copied): {escape(', '.join(unfinished))};"
            " their figures are missing or partial.</p>" if unfinished else "")
    if not stages:
        return f"<h2 id=funnel>Funnel</h2>{note}<p>No finished stage has a stats.json yet.</p>"
    side = set(data.get("side_stages") or [])
    breakdown = data.get("breakdown") or {}
    rows = []
    for s in stages:
        dropped = sum(c["docs"] for c in s["dropped"].values())
        errors = sum(c["docs"] for c in s["errors"].values())
        tokens = (sum(v[2] for v in (breakdown.get(s["stage"], {}).get("lang", {}).get(KEPT) or {}).values())
                  or (s.get("report") or {}).get("tokens"))  # the shards' tokens come from its report
        status = '<span class="skip">skipped</span>' if s.get("skipped") else f'{s.get("seconds", 0):.1f} s'
        rows.append([escape(s["stage"]) + (" <span class=note>(sample, not a filter)</span>" if s["stage"] in side else ""),
                     escape(docs_in(s)), f"{s['kept']['docs']:,}", _pct(s["kept"]["docs"], _source_docs(s)),
                     readable_bytes(s.get("kept_text_bytes") or None), _int(tokens) if tokens else "–", f"{dropped:,}",
                     f'<span class=err>{errors:,}</span>' if errors else "0", status, escape(s.get("engine", ""))])
    flow = [s for s in stages if s["stage"] not in side]
    docs = hbar_chart("funnel-docs", "documents kept per stage", [s["stage"] for s in flow],
                      {"kept": [s["kept"]["docs"] for s in flow]}, value_label="documents")
    with_text = [s for s in flow if s.get("kept_text_bytes")]  # encode and shards keep token ids only
    text = hbar_chart("funnel-bytes", "text bytes kept per stage", [s["stage"] for s in with_text],
                      {"kept": [s["kept_text_bytes"] for s in with_text]}, value_label="text bytes (UTF-8)")
    parts = ["<h2 id=funnel>Funnel</h2>", note, "<p class=note>Bytes are UTF-8 bytes of the document text at every stage "
             "(ingest's raw record bytes are in stats.json for conservation only). Tokens are counted from encode on.</p>",
             _table(["stage", "documents in", "kept", "% kept", "text kept", "tokens kept", "dropped", "errors",
                     "time", "engine"], rows),
             "<div class=grid>", _figure("Documents kept per stage", docs), _figure("Text bytes kept per stage", text),
             "</div>", _language_funnel(flow, breakdown), _waterfalls(flow)]
    return "".join(parts)


def _language_funnel(flow: list[dict], breakdown: dict) -> str:
    langs = sorted({lang for s in flow for lang in (breakdown.get(s["stage"], {}).get("lang", {}).get(KEPT) or {})})
    if not langs:
        return ""
    header = ["stage"] + [f"{escape(lang)} {unit}" for lang in langs for unit in ("docs", "text", "tokens")]
    rows = []
    for s in flow:
        kept = breakdown.get(s["stage"], {}).get("lang", {}).get(KEPT)
        if kept is None:
            continue
        rows.append([escape(s["stage"])] + [c for lang in langs for c in (
            _int(kept.get(lang, [0, 0, 0])[0]), readable_bytes(kept.get(lang, [0, 0, 0])[1] or None),
            _int(kept.get(lang, [0, 0, 0])[2]) if kept.get(lang, [0, 0, 0])[2] else "–")])
    return "<h3>By language</h3><p class=note>Kept after each stage (\"?\": no language yet).</p>" + _table(header, rows)


def _waterfalls(flow: list[dict]) -> str:
    figs = []
    for s in flow:
        steps = [(f"{reason}", c["docs"]) for reason, c in sorted(s["dropped"].items(), key=lambda kv: -kv[1]["docs"])]
        steps += [(f"error: {reason}", c["docs"]) for reason, c in sorted(s["errors"].items())]
        if not steps:
            continue
        figs.append(_figure(f"{s['stage']}: where its documents went", waterfall_chart(
            f"waterfall-{s['stage']}", f"{s['stage']} drops", ("in", _source_docs(s)), steps,
            ("kept", s["kept"]["docs"]), width=560)))
    if not figs:
        return ""
    return ("<h3>Drops per reason</h3><p class=note>Each stage's input, what each reason took off it, and what "
            "it kept (documents).</p><div class=grid>" + "".join(figs) + "</div>")


# ---------------------------------------------------------------------------------------------
# Sources and languages


def by_name_section(title: str, anchor: str, entries: dict, flow: list[str], tokens_label: str) -> str:
    if not entries:
        return ""
    stages = [s for s in flow if any(s in e["stages"] for e in entries.values())]
    summary, contribution = [], []
    for name, e in entries.items():
        last = next((e["stages"][s][1] for s in reversed(stages) if s in e["stages"] and e["stages"][s][1]), None)
        drops = "<br>".join(f"{escape(k)}: {v[0]:,}" for k, v in e.get("top_drops") or []) or "–"
        tokens = (_int(e["shard_tokens"]) if e.get("shard_tokens") is not None
                  else _int(e["stream_tokens"]) + "*" if e.get("stream_tokens") else "–")
        summary.append([escape(name), readable_bytes(last), tokens,
                        "–" if e.get("mix_epochs") is None else f"{e['mix_epochs']:.2f}", drops])
        contribution.append([escape(name)] + [_int((e["stages"].get(s) or [None])[0]) for s in stages])
    tables = (_table(["name", "text (last stage with text)", tokens_label, "epochs in the mix", "top drop reasons "
                      "(documents)"], summary)
              + "<h3>Documents kept after each stage</h3>" + _table(["name"] + [escape(s) for s in stages], contribution))
    charts = []
    if stages:
        charts.append(_figure(f"Contribution per stage ({title.lower()})", hbar_chart(
            f"{anchor}-contribution", f"documents per {anchor}", list(entries),
            {s: [(e["stages"].get(s) or [0])[0] for e in entries.values()] for s in stages}, value_label="documents")))
    if any(e.get("shard_tokens") or e.get("stream_tokens") for e in entries.values()):
        charts.append(_figure(f"Tokens in the shards ({title.lower()})", hbar_chart(
            f"{anchor}-tokens", "tokens in the shards", list(entries),
            {"tokens": [e.get("shard_tokens") or e.get("stream_tokens") or 0 for e in entries.values()]},
            value_label="tokens")))
    return (f"<h2 id={anchor}>{escape(title)}</h2><p class=note>Documents kept after each stage, the three reasons "
            "that dropped most of them, tokens in the shards, and epochs in the mix (mix text bytes over the text "
            "bytes its upstream kept: above 1, repeated; below 1, partly sampled). *: the token stream the shards "
            "pack, encode's tokens plus one &lt;eos&gt; per document, before the objective's [MASK], &lt;sop&gt; and "
            "&lt;eop&gt; tokens (the shards count tokens by mix source and language).</p>"
            + tables + "<div class=grid>" + "".join(charts) + "</div>")


# ---------------------------------------------------------------------------------------------
# Distributions


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
        figs.append(_figure(f"{lang}: documents by length", line_chart(
            f"lengths-{lang}", f"document lengths, {lang}", labels,
            {stage: [counts.get(str(b), counts.get(b, 0)) for b in bins] for stage, counts in series.items()},
            width=520, x_label="length (characters, power-of-two bins)", y_label="documents")))
    return ("<h2 id=lengths>Document lengths per language</h2><p class=note>Kept documents per power-of-two bin of "
            "the length in characters, after each stage.</p><div class=grid>" + "".join(figs) + "</div>")


def length_bin_label(b: int) -> str:
    return "0" if b < 0 else fmt_number(2 ** b)


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
            width=360, height=190, x_label="share" if is_fraction_signal(column) else "value (bin's lower edge)",
            y_label="documents")))
    return ("<h2 id=signals>Quality signals</h2><p class=note>Kept documents of the quality stage by each "
            "<code>q_*</code> column, per language (shares and ratios in 0.05 bins; counts and lengths in "
            "quarter-octave bins, labelled by their lower edge). Re-filter on these columns without recomputing "
            f"them.</p><details><summary>{len(signals)} signals</summary><div class=grid>" + "".join(figs)
            + "</div></details>")


def dedup_section(clusters: dict, examples: list[dict]) -> str:
    if not clusters and not examples:
        return ""
    parts = ["<h2 id=dedup>Duplicates</h2>"]
    if clusters:
        present = sorted(int(b) for b in clusters)
        bins = list(range(present[0], present[-1] + 1))
        labels = ["1" if b == 0 else f"{2 ** b}–{2 ** (b + 1) - 1}" for b in bins]
        parts.append("<p class=note>Surviving documents by the size of their duplicate cluster (1 = no duplicate).</p>"
                     + _figure("Clusters by size", column_chart(
                         "dedup-clusters", "dedup cluster sizes", labels,
                         {"survivors": [clusters.get(str(b), clusters.get(b, 0)) for b in bins]}, log_y=True,
                         x_label="cluster size (documents)", y_label="surviving documents")))
    if examples:
        parts.append("<h3>Cluster examples</h3><p class=note>The survivor beside the duplicates removed in its favour; "
                     "similarity: Jaccard of character 5-grams of the texts shown (the first 1,200 characters).</p>")
        for ex in examples:
            survivor = ex.get("survivor")
            cells = [_doc_block("survivor", survivor) if survivor else "<div class=note>survivor not among the "
                     "recorded examples</div>"]
            for d in ex["duplicates"]:
                sim = "–" if d.get("similarity") is None else f"{d['similarity']:.2f}"
                cells.append(_doc_block(f"duplicate ({d.get('detail') and 'of ' + d['detail'][:24] or ''}) "
                                        f"similarity {sim}", d))
            parts.append(f"<details><summary>cluster {escape(str(ex['cluster'])[:40])}: "
                         f"{len(ex['duplicates'])} duplicate(s) shown</summary><div class=pair>{''.join(cells)}</div>"
                         "</details>")
    return "".join(parts)


def _doc_block(label: str, d: dict) -> str:
    chars = d.get("chars")
    shown = len(d.get("text") or "")
    cut = f" (first {shown:,} of {chars:,} characters)" if chars and chars > shown else ""
    meta = " · ".join(escape(str(d[k])) for k in ("source", "lang", "url") if d.get(k))
    detail = f" <i>{escape(str(d['detail']))}</i>" if d.get("detail") else ""
    return (f"<div><p><b>{escape(label)}</b> {escape(str(d.get('id') or ''))}{detail}<br><span class=note>{meta}"
            f"{escape(cut)}</span></p><pre>{escape(d.get('text') or '')}</pre></div>")


# ---------------------------------------------------------------------------------------------
# Shards


def shards_section(manifest: dict | None, report: dict) -> str:
    if not manifest and not report:
        return ""
    manifest = manifest or {}
    shards = manifest.get("shards") or []
    parts = ["<h2 id=shards>Shards</h2>"]
    tokens = report.get("tokens", sum(s.get("tokens", 0) for s in shards))
    loss = report.get("loss_tokens", sum(s.get("loss_tokens", 0) for s in shards))
    sequences = report.get("sequences", sum(s.get("samples", 0) for s in shards))
    seq_len = manifest.get("seq_len")
    fill = tokens / (sequences * seq_len) if sequences and seq_len else None
    facts = [["shards", _int(len(shards) or report.get("shards"))], ["sequences", _int(sequences)],
             ["sequence length", f"{_int(seq_len)} tokens"], ["tokens", _int(tokens)],
             ["sequence fill", "–" if fill is None else f"{100 * fill:.2f}% of sequence positions hold a token"],
             ["loss tokens", f"{_int(loss)} ({_pct(loss, tokens)} of tokens)"]]
    for key in ("vocab_size", "seed", "sequences_per_shard", "stream_tokens"):
        if key in manifest:
            facts.append([_title(key), _cell(manifest[key])])
    tok = manifest.get("tokenizer")
    if isinstance(tok, dict):
        facts.append(["tokenizer", escape(f"{tok.get('file')} (sha256 {str(tok.get('sha256'))[:12]}…)")])
    if isinstance(manifest.get("objective"), dict):
        facts += [[f"objective: {escape(_title(k))}", _cell(v)] for k, v in manifest["objective"].items()]
    parts.append(_table(["", ""], [[escape(a), b] for a, b in facts]))
    figs = []
    for key, label in (("tokens_per_language", "language"), ("tokens_per_source", "source")):
        per = report.get(key) or {}
        if per:
            figs.append(_figure(f"Tokens per {label}", hbar_chart(
                f"shard-{key}", f"tokens per {label}", list(per), {"tokens": [float(v) for v in per.values()]},
                width=520, value_label="tokens")))
    split = {"[MASK]": report.get("mask_sequences"), "[gMASK]": report.get("gmask_sequences")}
    if all(_is_number(v) for v in split.values()):
        figs.append(_figure("Sequences by corruption: [MASK] vs [gMASK]", hbar_chart(
            "shard-kinds", "MASK/gMASK split", list(split), {"sequences": [float(v) for v in split.values()]},
            width=520, value_label="sequences")))
    spans = report.get("span_length_hist") or {}
    if spans:
        lengths = sorted(int(k) for k in spans)
        bins = list(range(lengths[0], lengths[-1] + 1))
        figs.append(_figure(f"[MASK] span lengths (achieved mask ratio "
                            f"{100 * report.get('mask_ratio_achieved', 0):.1f}%)", column_chart(
            "shard-span-lengths", "span length histogram", [str(b) for b in bins],
            {"spans": [float(spans.get(str(b), 0)) for b in bins]}, width=520,
            x_label="span length (tokens)", y_label="spans")))
    gmask = report.get("gmask_ratio_hist") or []
    if gmask:
        n = len(gmask)
        figs.append(_figure("[gMASK] generated share of each sample", column_chart(
            "shard-gmask-ratio", "gMASK ratio histogram", [f"{i / n:.1f}" for i in range(n)],
            {"samples": [float(v) for v in gmask]}, width=520,
            x_label="generated share of the sample (bin's lower edge)", y_label="[gMASK] samples")))
    if shards:
        labels = [str(i) for i in range(len(shards))]
        t = [s.get("tokens", 0) for s in shards]
        lt = [s.get("loss_tokens", 0) for s in shards]
        figs.append(_figure("Tokens per shard", column_chart("shard-tokens", "tokens per shard", labels,
                                                             {"tokens": t, "loss tokens": lt}, width=520,
                                                             x_label="shard", y_label="tokens")))
    parts.append("<div class=grid>" + "".join(figs) + "</div>")
    if shards:
        rows = []
        for s in shards:
            langs = ", ".join(f"{escape(k)} {_share(v, s.get('tokens'))}" for k, v in (s.get("languages") or {}).items())
            srcs = ", ".join(f"{escape(k)} {_share(v, s.get('tokens'))}" for k, v in (s.get("sources") or {}).items())
            rows.append([escape(str(s.get("file", ""))), _int(s.get("samples")), _int(s.get("tokens")),
                         _int(s.get("loss_tokens")), _pct(s.get("loss_tokens", 0), s.get("tokens", 0)),
                         langs or "–", srcs or "–", escape(str(s.get("sha256", ""))[:12]) + "…"])
        total = ["total", _int(sum(s.get("samples", 0) for s in shards)), _int(sum(s.get("tokens", 0) for s in shards)),
                 _int(sum(s.get("loss_tokens", 0) for s in shards)), _pct(loss, tokens), "", "", ""]
        parts.append("<h3>Manifest</h3>" + _table(["file", "sequences", "tokens", "loss tokens", "loss share",
                                                  "languages (share of tokens)", "sources (share of tokens)",
                                                  "sha256"], rows, total))
    return "".join(parts)


def _share(value, tokens) -> str:
    """A manifest mix entry: a share (<= 1) as a percentage, a token count as a share of `tokens`."""
    if not _is_number(value):
        return escape(str(value))
    if value <= 1:
        return f"{100 * value:.0f}%"
    return _pct(value, tokens or 0)


# ---------------------------------------------------------------------------------------------
# Samples


def is_flagged(reason: str) -> bool:
    return any(w in reason.lower() for w in FLAGGED_REASON_WORDS)


def samples_section(samples: dict, error_samples: dict) -> str:
    if not samples and not error_samples:
        return ""
    parts = ["<h2 id=samples>Samples of kept and rejected documents</h2><p class=note>Per stage, outcome and "
             "language, the documents with the smallest seeded keys (the same on any partitioning; "
             "<code>glmdata inspect</code> shows more). Hidden until clicked; reasons that catch adult or spam "
             "pages need a second click and stay blurred until hovered. Texts are cut to their first characters.</p>"]
    for stage, by_outcome in samples.items():
        blocks = []
        for outcome, per_lang in by_outcome.items():
            for lang, docs in per_lang.items():
                items = "".join(_doc_block(outcome, d) for d in docs)
                label = f"{'kept' if outcome == KEPT else 'rejected: ' + outcome} · {lang if lang != UNKNOWN else 'no language'}"
                if outcome != KEPT and is_flagged(outcome):
                    items = ("<details class=blur><summary>may be adult or spam content: click to show</summary>"
                             f"{items}</details>")
                blocks.append(f"<details><summary>{escape(label)} ({len(docs)} shown)</summary>{items}</details>")
        parts.append(f"<h3>{escape(stage)}</h3>" + "".join(blocks))
    for stage, errors in error_samples.items():
        items = "".join(f"<div><p><b>{escape(e.get('reason') or '')}</b> {escape(e.get('source_file') or '')} "
                        f"@ offset {escape(str(e.get('source_offset')))}</p><pre>{escape(e.get('message') or '')}</pre></div>"
                        for e in errors)
        parts.append(f"<details><summary class=err>{escape(stage)}: errors ({len(errors)} shown; "
                     f"<code>glmdata inspect --errors</code> lists them)</summary>{items}</details>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# A stage's own "report" aggregates and unknown keys, rendered by shape


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
                                width=520, x_label=_title(path.rsplit("-", 1)[-1]), y_label="count")
        if len(labels) == 1:
            return _table(["", ""], [[escape(labels[0]), fmt_number(list(value.values())[0])]])
        return hbar_chart(path, path, labels, {"value": [float(v) for v in value.values()]}, width=520,
                          value_label=_title(path.rsplit("-", 1)[-1]))
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) and all(
            all(_is_number(x) or isinstance(x, str) or x is None for x in v.values()) for v in value.values()):
        metrics = sorted({m for v in value.values() for m in v})
        table = _table([""] + [escape(_title(m)) for m in metrics],
                       [[escape(str(r))] + [_cell(v.get(m)) for m in metrics] for r, v in value.items()])
        pairs = _target_pairs(set(metrics))
        charts = [_figure(f"{_title(name)}: target vs achieved", hbar_chart(
            f"{path}-{name}", f"{name}: target vs achieved", [str(r) for r in value],
            {"target": [float(value[r].get(tk) or 0) for r in value],
             "achieved": [float(value[r].get(ak) or 0) for r in value]}, width=520, value_label=_title(name)))
            for name, tk, ak in pairs]
        return ("<div class=grid>" + "".join(charts) + "</div>" if charts else "") + table
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        return column_chart(path, path, [str(i) for i in range(len(value))], {"count": [float(v) for v in value]},
                            width=520, x_label="index", y_label=_title(path.rsplit("-", 1)[-1]))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = sorted({k for v in value for k, x in v.items() if not isinstance(x, (dict, list))})
        return _table([escape(_title(c)) for c in cols], [[_cell(v.get(c)) for c in cols] for v in value[:200]])
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in value.items() if isinstance(v, (dict, list)) and v}
        out = []
        if scalars:
            out.append(_table(["", ""], [[escape(_title(str(k))), _cell(v)] for k, v in scalars.items()]))
        tag = f"h{min(3 + depth, 6)}"
        for k, v in nested.items():
            out.append(f"<{tag}>{escape(_title(str(k)))}</{tag}>" + render_value(f"{path}-{k}", v, depth + 1))
        return "".join(out)
    return f"<p>{escape(str(value))}</p>"


def stage_reports_section(stages: list[dict]) -> str:
    parts = []
    for s in stages:
        report = {} if s["stage"] == "shards" else (s.get("report") or {})
        extra = {k: v for k, v in (s.get("extra") or {}).items() if v and k != "units"}
        unknown = {k: v for k, v in s.items() if k not in KNOWN_STATS_KEYS and v not in (None, {}, [])}
        if not report and not extra and not unknown:
            continue
        parts.append(f"<h2 id='stage-{escape(s['stage'])}'>{escape(s['stage'])} stage: its own figures</h2>")
        if report:
            parts.append(render_value(f"report-{s['stage']}", report))
        if unknown:
            parts.append(render_value(f"stats-{s['stage']}", unknown))
        if extra:
            parts.append("<details><summary>stage counters</summary>" + render_value(f"extra-{s['stage']}", extra)
                         + "</details>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Pages


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(body) + "</body></html>\n")


NAV = [("funnel", "Funnel"), ("sources", "Sources"), ("languages", "Languages"), ("lengths", "Lengths"),
       ("signals", "Signals"), ("dedup", "Duplicates"), ("shards", "Shards"), ("samples", "Samples")]


def render_page(data: dict) -> str:
    stages = data.get("stages", [])
    flow = [s["stage"] for s in stages if s["stage"] not in (data.get("side_stages") or [])]
    legacy = data.get("legacy_stages") or []
    body = [
        f"<h1>glmdata run report</h1><p class=meta>{escape(data.get('workdir', ''))} · run on "
        f"{escape(str(data.get('engine', '')))} · generated {escape(data.get('generated_at', ''))}</p>",
        "<nav>" + "".join(f"<a href='#{a}'>{t}</a>" for a, t in NAV) + "</nav>",
        (f"<p class=note>Written before stages recorded profiles: {escape(', '.join(legacy))}; histograms recomputed"
         f" on {escape(str(data.get('recomputed_on')))}, no per-source figures for them.</p>" if legacy else ""),
        funnel_section(data),
        by_name_section("Sources", "sources", data.get("sources") or {}, flow, "tokens in the shards"),
        by_name_section("Languages", "languages", data.get("languages") or {}, flow, "tokens in the shards"),
        lengths_section(data.get("lengths") or {}),
        signals_section(data.get("quality_signals") or {}),
        dedup_section(data.get("dedup_clusters") or {}, data.get("duplicate_examples") or []),
        stage_reports_section(stages),
        shards_section(data.get("shards_manifest"),
                       next((s.get("report") or {} for s in stages if s["stage"] == "shards"), {})),
        samples_section(data.get("samples") or {}, data.get("error_samples") or {}),
    ]
    return _page("glmdata report", body)


def _delta(a, b) -> str:
    if not _is_number(a) or not _is_number(b):
        return "–"
    d = b - a
    cls = "up" if d > 0 else "down" if d < 0 else ""
    return f"<span class='{cls}'>{d:+,}</span>" if d else "0"


def _count_or_not_run(n) -> str:
    """A compared count; None: that run did not run the stage."""
    return "not run" if n is None else _int(n)


def render_compare_page(data: dict) -> str:
    """Two runs (A, B) side by side: changes per stage, reason, source, language and tokens, and the
    documents that moved between kept and rejected."""
    a, b = escape(data["a"]), escape(data["b"])
    body = [f"<h1>glmdata run comparison</h1><p class=meta>A: {a}<br>B: {b}</p>"]
    rows = []
    for s in data["stages"]:
        rows.append([f"<b>{escape(s['stage'])}</b> kept", *map(_count_or_not_run, s["kept"]), _delta(*s["kept"])])
        for reason, c in s["reasons"].items():
            if c["a"] != c["b"]:
                rows.append([f"&nbsp;&nbsp;dropped: {escape(reason)}", _count_or_not_run(c["a"]), _count_or_not_run(c["b"]),
                             _delta(c["a"], c["b"])])
    tokens = data.get("shard_tokens") or [None, None]
    rows.append(["<b>tokens in the shards</b>", _int(tokens[0]), _int(tokens[1]), _delta(*tokens)])
    body.append("<h2>Per stage and reason</h2><p class=note>Documents; reasons listed where the count changed.</p>"
                + _table(["", "A", "B", "B − A"], rows))
    for by in ("sources", "languages"):
        rows = []
        for name, e in data.get(by, {}).items():
            for r in e["stages"]:
                a_b = [None if side is None else side[0] for side in (r["a"], r["b"])]
                if a_b[0] != a_b[1]:
                    rows.append([escape(name), f"kept after {escape(r['name'])}", *map(_count_or_not_run, a_b), _delta(*a_b)])
            for r in e["dropped"]:
                if r["a"][0] != r["b"][0]:
                    rows.append([escape(name), f"dropped by {escape(r['name'])}", _int(r["a"][0]), _int(r["b"][0]),
                                 _delta(r["a"][0], r["b"][0])])
            for key, label in (("shard_tokens", "tokens in the shards"),
                               ("stream_tokens", "token stream into the shards (tokens + &lt;eos&gt;)")):
                a_b = e.get(key) or [None, None]
                if a_b[0] != a_b[1]:
                    rows.append([escape(name), label, _int(a_b[0]), _int(a_b[1]), _delta(*a_b)])
        body.append(f"<h2>Per {by[:-1]}</h2>" + (_table([by[:-1], "figure", "A", "B", "B − A"], rows) if rows
                                                else "<p>No change.</p>"))
    body.append("<h2 id=moved>Documents that moved</h2><p class=note>Per stage, documents whose status differs "
                "between the runs (kept, a drop reason, or absent: not in that stage's output), with the ones of "
                "smallest seeded key as samples.</p>")
    for stage, transitions in (data.get("moved") or {}).items():
        if not transitions:
            continue
        body.append(f"<h3>{escape(stage)}</h3>" + _table(["in A", "in B", "documents"], [
            [escape(t["a"]), escape(t["b"]), _int(t["documents"])] for t in transitions]))
        for t in transitions:
            items = []
            for s in t["samples"]:
                row = s.get("a") or s.get("b") or {"id": s["id"]}
                detail = "; ".join(f"{side}: {escape(str(r.get('reject_detail')))}" for side, r in
                                   (("A", s.get("a")), ("B", s.get("b"))) if r and r.get("reject_detail"))
                items.append(f"<div class=moved-doc data-id='{escape(s['id'])}'>"
                             + _doc_block(f"{t['a']} → {t['b']}", {**row, "detail": detail or None}) + "</div>")
            inner = "".join(items)
            if any(is_flagged(x) for x in (t["a"], t["b"])):
                inner = f"<details class=blur><summary>may be adult or spam content: click to show</summary>{inner}</details>"
            body.append(f"<details><summary>{escape(t['a'])} → {escape(t['b'])}: {len(t['samples'])} of "
                        f"{t['documents']:,} shown</summary>{inner}</details>")
    return _page("glmdata comparison", body)
