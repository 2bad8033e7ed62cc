"""The quality stage's defaults on labelled documents of ../shared/data: kept rate of clean prose,
removal rate of adult, gambling and spam pages, blocklist recall and false-positive rate, and the
separation (ROC AUC) of q_score per language.

    .venv/bin/python bench/quality_labelled.py [--data ../shared/data] [--split report|tune|all]
                                               [--config configs/demo.yaml] [--ablation] [--lm]
                                               [--titles] [--show-kept-dirty]

Labels: bench/quality_labels.tsv (file, record, label; never the text). Every labelled document is
assigned to the `tune` or the `report` half by a hash of its file and key, so thresholds chosen on
one half are judged on the other. Documents go through what the pipeline does before quality:
language ID (filters.langid) and, for Chinese, normalization (filters.normalize), then the quality
stage's own batch function with the config's `quality` section (defaults when none is given).
Files are read by ingest's own readers (pipeline.ingest.read_file; JSON lines with the field names
of their layout: the ccnet preset for CCNet/ChineseWebText, dolma for Dolma), so each document
carries the `title` a user's run would give it (CCNet's title field, a WARC page's <title>).
Pages are named by URL only.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELS = ROOT / "bench" / "quality_labels.tsv"


@dataclass
class Labelled:
    set: str
    file: str
    key: str  # line number or URL
    label: str  # clean, dirty or other
    text: str
    url: str | None
    title: str | None

    @property
    def half(self) -> str:
        digest = hashlib.sha1(f"{self.file}\t{self.key}".encode()).digest()
        return "tune" if digest[0] % 2 == 0 else "report"


def read_labels(path: Path = LABELS) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(tuple(line.split("\t")))
    return rows


def _field_map(path: Path):
    """The field names a user's config gives a JSON lines dump: the ccnet preset for CCNet's
    layout (ChineseWebText), dolma for Dolma's, the defaults (text, id, url, title) otherwise."""
    from pipeline.ingest.jsonl import PRESETS, FieldMap

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    if "raw_content" in first:
        return PRESETS["ccnet"]
    return PRESETS["dolma"] if isinstance(first.get("metadata"), dict) else FieldMap()


def _records(data: Path, file: str) -> list[tuple[str, str, str | None, str | None]]:
    """(key, text, url, title) of every record of a file, as ingest reads it: JSON lines by line
    number, WARC/WET by URL, plain text as one record."""
    from pipeline.ingest import read_file
    from pipeline.ingest.events import Document
    from pipeline.ingest.jsonl import FieldMap

    path = data / file
    if ".jsonl" in file:
        events = list(read_file(str(path), "jsonl", _field_map(path), 64 << 20))
        if not all(isinstance(e, Document) for e in events):  # line numbers are the keys
            raise ValueError(f"{path}: a line that is not a document ({events})")
        return [(str(number), e.text, e.url, e.title) for number, e in enumerate(events)]
    if ".warc" in file or ".wet" in file:
        fmt = "wet" if ".wet" in file else "warc"
        return [(e.url, e.text, e.url, e.title) for e in read_file(str(path), fmt, FieldMap(), 64 << 20)
                if isinstance(e, Document)]
    return [("0", path.read_text(encoding="utf-8"), None, None)]


PART_CHARS = 4000
_PART_SPAN = re.compile(r"(\d+)/(\d+)-(\d+)")


def _parts(text: str) -> list[str]:
    """A whole book cut at blank lines into parts of just over PART_CHARS characters (chapter-sized
    documents, as bench/dedup_quality.py makes them); the last part may be shorter."""
    parts, chunk = [], []
    for paragraph in text.split("\n\n"):
        chunk.append(paragraph)
        if sum(map(len, chunk)) > PART_CHARS:
            parts.append("\n\n".join(chunk))
            chunk = []
    return parts + ["\n\n".join(chunk)] if chunk else parts


def _matching(records: list[tuple[str, str, str | None, str | None]], key: str):
    """(key, text, url, title) of the records a label's key names: `*`, one record's key, or
    `record/first-last`, parts first..last of that record (`_parts`), keyed `record/part`."""
    span = _PART_SPAN.fullmatch(key)
    if span is None:
        return [r for r in records if key in ("*", r[0])]
    record, first, last = span[1], int(span[2]), int(span[3])
    [(_, text, url, title)] = [r for r in records if r[0] == record]
    return [(f"{record}/{i}", part, url, title) for i, part in enumerate(_parts(text)) if first <= i <= last]


def load_labelled(data: Path) -> list[Labelled]:
    docs, cache = [], {}
    for set_name, file, key, label in read_labels():
        if file not in cache:
            cache[file] = _records(data, file)
        for record_key, text, url, title in _matching(cache[file], key):
            docs.append(Labelled(set_name, file, record_key, label, text, url, title))
    return docs


def as_rows(docs: list[Labelled]) -> list[dict]:
    """Pipeline rows as quality sees them: language from filters.langid, Chinese normalized (the
    text; langid leaves the title as ingest wrote it)."""
    from filters.langid import LanguageIdentifier
    from filters.normalize import normalize_chinese

    identifier = LanguageIdentifier()
    rows = []
    for i, d in enumerate(docs):
        lang = identifier.identify(d.text).lang
        text = normalize_chinese(d.text) if lang == "zh" else d.text
        rows.append({"id": f"doc{i}", "text": text, "url": d.url, "title": d.title, "source": d.set, "lang": lang})
    return rows


def judge(rows: list[dict], config: Path | None = None,
          overrides: dict | None = None) -> tuple[list[str | None], list[float | None]]:
    """(rejection reason or None, q_score) per row, by the quality stage's batch function, with
    the `quality` section of `config`, or the defaults changed by `overrides`."""
    import pyarrow as pa
    import yaml

    from pipeline.stages import load_config
    from pipeline.schema import DOC_SCHEMA
    from pipeline.stages.quality import QualityStage

    with tempfile.TemporaryDirectory() as tmp:
        if config is None:
            config = Path(tmp) / "config.yaml"
            config.write_text(yaml.safe_dump({"run": {"workdir": str(Path(tmp) / "out")}, "quality": overrides or {}}))
        stage = QualityStage(load_config(config))
        reasons, scores = [], []
        for start in range(0, len(rows), 256):
            result = stage.process_batch(pa.RecordBatch.from_pylist(rows[start:start + 256], DOC_SCHEMA))
            reasons += result.reasons
            scores += result.rows.column("q_score").to_pylist()
    return reasons, scores


def by_lists(reason: str | None) -> bool:
    """Rejected by a blocklist or the Chinese spam/adult lexicon, in the text, URL or title (rather
    than a quality rule)."""
    return reason is not None and (reason.startswith("blocklist:") or reason in ("zh:spam_density", "zh:spam_title"))


def roc_auc(scores_pos: list[float], scores_neg: list[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half."""
    if not scores_pos or not scores_neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in scores_pos for n in scores_neg)
    return wins / (len(scores_pos) * len(scores_neg))


def _shipped(lang: str, rule_set: str, **changes) -> dict:
    """The `quality` override of one rule set: its shipped default with `changes`, whole (a
    rule set given in a config is built from the keys given and the class's own defaults, so
    naming one key alone would also undo the rule set's other shipped values)."""
    from pipeline.stages.quality import QualitySection

    default = getattr(getattr(QualitySection(), lang), rule_set)
    return {lang: {rule_set: {**dataclasses.asdict(default), **changes}}}


def ablations() -> dict[str, dict]:
    """Each default this project changed, and the value it had (datatrove's, ChineseWebText's,
    FineWeb-2's, or no list): `--ablation` prints the kept rates with each one put back."""
    short_dup_lines = {**_shipped("en", "gopher_repetition", dup_short_line_chars=0)["en"],
                       **_shipped("en", "fineweb", dup_short_line_chars=0)["en"]}
    return {
        "C4 terminal punct on": _shipped("en", "c4", filter_no_terminal_punct=True),
        "Gopher alpha 0.8": _shipped("en", "gopher_quality", max_non_alpha_words_ratio=0.8),
        "en short dup lines count": {"en": short_dup_lines},
        "C4 5 sentences flat": _shipped("en", "c4", min_num_sentences_prose=None),
        "en wrapped lines count": {"en": {**_shipped("en", "c4", join_hard_wrapped_lines=False)["en"],
                                          **_shipped("en", "fineweb", join_hard_wrapped_lines=False)["en"]}},
        "zh min 200 chars flat": _shipped("zh", "chinesewebtext", min_chars_prose=200),
        "zh 13-gram rep. as is": _shipped("zh", "chinesewebtext", repeat_block_min_frac=1.0),
        "zh Gopher rep. as is": _shipped("zh", "gopher_repetition", repeat_char_ngram=0),
        "zh Gopher 50 words": _shipped("zh", "gopher_quality", min_doc_words=50),
        "no UT1/URL words": {"url_blocklists": [str(ROOT / "filters/data/url_blocklist.txt")], "url_lists": [],
                             "url_banned_words": [], "url_soft_words": [], "url_banned_subwords": []},
        "no zh adult lexicon": {"zh": {"spam_terms_files": [str(ROOT / "filters/data/zh_spam_terms.txt")]}},
        "no title rule": {"title": None},
    }


# quality.title's thresholds compared by `--titles` (min_title_hits, min_page_hits)
TITLE_VARIANTS = {"1 in title": (1, 1), "1 in title + 1 on page (default)": (1, 2), "2 in title": (2, 2)}
HEADLINE_CHARS = 40  # THUCNews texts begin with their headline, unseparated: its stand-in


def _title_rules() -> dict:
    """quality.title as the stage builds it (the lists its config names), at each TITLE_VARIANTS."""
    import yaml

    from filters.title import TitleBlocklist
    from pipeline.stages import load_config
    from pipeline.stages.quality import QualityStage

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({"run": {"workdir": str(Path(tmp) / "out")}}))
        [rule] = [r for r in QualityStage(load_config(config)).chains[None].rule_sets if isinstance(r, TitleBlocklist)]
    return {name: dataclasses.replace(rule, min_title_hits=hits, min_page_hits=page)
            for name, (hits, page) in TITLE_VARIANTS.items()}


def _titled_pages(data: Path):
    """(source, title, text) of every page of ../shared/data with a title, labelled or not, as ingest
    reads it; and the news articles of html/en-news (their <title>)."""
    from pipeline.ingest import read_file
    from pipeline.ingest.events import Document
    from pipeline.ingest.html import html_page
    from pipeline.ingest.jsonl import FieldMap

    for path in sorted((data / "crawl" / "warc").iterdir()):
        for e in read_file(str(path), "auto", FieldMap(), 64 << 20):
            if isinstance(e, Document) and e.title:
                yield f"crawl/warc/{path.name}", e.title, e.text
    for path in sorted((data / "jsonl").iterdir()):
        for e in read_file(str(path), "jsonl", _field_map(path), 64 << 20):
            if isinstance(e, Document) and e.title:
                yield f"jsonl/{path.name}", e.title, e.text
    for path in sorted((data / "html" / "en-news").glob("*.html.gz")):
        page = html_page(gzip.decompress(path.read_bytes()).decode("utf-8", "replace"))
        if page.title:
            yield "html/en-news (clean news)", page.title, page.text


def title_table(data: Path, docs: list[Labelled], rows: list[dict]) -> None:
    """The title rule alone, at each TITLE_VARIANTS: documents it rejects per labelled set (thresholds
    are chosen on the tune half), then on every titled page of ../shared/data, then on THUCNews
    headlines (their first HEADLINE_CHARS characters as the title, the rest as the text)."""
    from filters.normalize import normalize_chinese
    from filters.title import TitledDoc

    rules = _title_rules()

    def rejected(rule, title: str | None, text: str) -> bool:
        return rule.judge(TitledDoc(text, str.split, None, None, title), {}) is not None

    print("\ntitle rule alone (quality.title: min_title_hits, min_page_hits), documents rejected:")
    print("| set | label | docs | titled | " + " | ".join(rules) + " |")
    print("|---|---|---|---|" + "---|" * len(rules))
    for set_name, label in sorted({(d.set, d.label) for d in docs}):
        idx = [i for i, d in enumerate(docs) if d.set == set_name and d.label == label]
        cells = [str(sum(rejected(rule, docs[i].title, rows[i]["text"]) for i in idx)) for rule in rules.values()]
        titled = sum(bool(docs[i].title) for i in idx)
        print(f"| {set_name} | {label} | {len(idx)} | {titled} | " + " | ".join(cells) + " |")
    by_source: dict[str, list] = defaultdict(list)
    for source, title, text in _titled_pages(data):
        by_source[source].append((title, text))
    headlines = []
    with open(data / "text" / "zh-news-thucnews.jsonl", encoding="utf-8") as f:
        for line in f:
            text = normalize_chinese(json.loads(line)["text"])
            headlines.append((text[:HEADLINE_CHARS], text[HEADLINE_CHARS:]))
    by_source[f"text/zh-news-thucnews.jsonl (first {HEADLINE_CHARS} characters as the title; clean)"] = headlines
    print("\n| titled pages of ../shared/data | pages | " + " | ".join(rules) + " |")
    print("|---|---|" + "---|" * len(rules))
    for source, pages in by_source.items():
        cells = [str(sum(rejected(rule, title, text) for title, text in pages)) for rule in rules.values()]
        print(f"| {source} | {len(pages)} | " + " | ".join(cells) + " |")


def ablation_table(docs: list[Labelled], rows: list[dict], reasons: list[str | None]) -> None:
    """Kept share of clean sets and removed share of dirty sets, defaults against each change undone."""
    groups = sorted({(d.set, d.label) for d in docs if d.label != "other"})
    columns = {"defaults": reasons}
    for name, overrides in ablations().items():
        columns[name] = judge(rows, overrides=overrides)[0]
    print("\n| set | label | docs | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for set_name, label in groups:
        idx = [i for i, d in enumerate(docs) if d.set == set_name and d.label == label]
        cells = []
        for values in columns.values():
            share = sum((values[i] is None) == (label == "clean") for i in idx) / len(idx)
            cells.append(f"{share:.1%}")
        print(f"| {set_name} | {'kept' if label == 'clean' else 'removed'} ({label}) | {len(idx)} | "
              + " | ".join(cells) + " |")


def compare_lm(data: Path, split: str, docs: list[Labelled], rows: list[dict], reasons: list, scores: list) -> None:
    """AUC of CCNet-style perplexity (filters/perplexity.py, trained on the clean documents of the
    other half) next to q_score's, on the same kept documents."""
    from filters.perplexity import train

    other_half = {"report": "tune", "tune": "report"}.get(split)
    training = [d for d in load_labelled(data) if d.label == "clean" and (other_half is None or d.half == other_half)]
    training_rows = as_rows(training)
    print(f"\ncharacter 5-gram LM trained on the clean documents of the {other_half or 'same'} half "
          f"(ROC AUC on the kept documents, as above):")
    for lang in ("en", "zh"):
        model = train([r["text"] for r in training_rows if r["lang"] == lang])
        kept = [i for i, r in enumerate(rows) if r["lang"] == lang and reasons[i] is None]
        pos = [i for i in kept if docs[i].label == "clean"]
        neg = [i for i in kept if docs[i].label != "clean"]
        lm = {i: model.score(rows[i]["text"]) for i in kept}
        auc_lm = roc_auc([lm[i] for i in pos], [lm[i] for i in neg])
        auc_q = roc_auc([scores[i] for i in pos], [scores[i] for i in neg])
        fmt = lambda a: "n/a" if a is None else f"{a:.3f}"  # noqa: E731
        print(f"  {lang}: q_score {fmt(auc_q)}, perplexity {fmt(auc_lm)} ({len(pos)} clean, {len(neg)} dirty/other)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--split", choices=["report", "tune", "all"], default="report")
    p.add_argument("--config", type=Path, help="a config whose `quality` section to use (default: the defaults)")
    p.add_argument("--ablation", action="store_true", help="also print the table of kept/removed rates with "
                   "each changed default put back (`ablations`)")
    p.add_argument("--lm", action="store_true", help="also train a character n-gram LM per language "
                   "(filters/perplexity.py) on the clean documents of the other half and compare its AUC")
    p.add_argument("--titles", action="store_true", help="also print the title rule alone at each of "
                   "TITLE_VARIANTS, per labelled set and on every titled page of the data")
    p.add_argument("--show-kept-dirty", action="store_true", help="list the URLs of dirty pages kept and the "
                   "reasons clean documents were rejected")
    args = p.parse_args()

    docs = [d for d in load_labelled(args.data) if args.split == "all" or d.half == args.split]
    rows = as_rows(docs)
    reasons, scores = judge(rows, args.config)

    print(f"split: {args.split}; {len(docs)} labelled documents; config: {args.config or 'defaults'}")
    print(f"{'set':<14}{'label':<7}{'docs':>6}{'kept':>8}{'removed':>9}{'by lists':>14}  top reasons")
    by_set: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_set[(d.set, d.label)].append(i)
    for (set_name, label), idx in sorted(by_set.items()):
        removed = [reasons[i] for i in idx if reasons[i] is not None]
        blocked = sum(map(by_lists, removed))
        top = ", ".join(f"{r} {n}" for r, n in Counter(removed).most_common(4))
        print(f"{set_name:<14}{label:<7}{len(idx):>6}{1 - len(removed) / len(idx):>8.1%}"
              f"{len(removed) / len(idx):>9.1%}{blocked:>8}/{len(idx):<5} {top}")

    clean = [i for i, d in enumerate(docs) if d.label == "clean"]
    dirty = [i for i, d in enumerate(docs) if d.label == "dirty"]
    not_dirty = [i for i, d in enumerate(docs) if d.label != "dirty"]
    kept_clean = sum(reasons[i] is None for i in clean) / len(clean)
    removed_dirty = sum(reasons[i] is not None for i in dirty) / len(dirty)
    recall = sum(by_lists(reasons[i]) for i in dirty) / len(dirty)
    false_pos = sum(by_lists(reasons[i]) for i in not_dirty) / len(not_dirty)
    print(f"\nclean prose kept: {kept_clean:.1%} of {len(clean)} (target >= 95%)")
    print(f"dirty pages removed: {removed_dirty:.1%} of {len(dirty)} (target >= 80%)")
    print(f"blocklists (URL, words, lexicon): recall {recall:.1%} of {len(dirty)} dirty, "
          f"false positives {false_pos:.2%} of {len(not_dirty)} clean or other")

    print("\nq_score separation of kept documents (ROC AUC, clean vs dirty and other web pages):")
    for lang in ("en", "zh"):
        pos = [scores[i] for i in clean if rows[i]["lang"] == lang and scores[i] is not None]
        neg = [scores[i] for i, d in enumerate(docs)
               if d.label != "clean" and rows[i]["lang"] == lang and scores[i] is not None]
        auc = roc_auc(pos, neg)
        print(f"  {lang}: {len(pos)} clean, {len(neg)} dirty/other kept; AUC "
              f"{'n/a' if auc is None else f'{auc:.3f}'}")

    if args.ablation:
        ablation_table(docs, rows, reasons)
    if args.titles:
        title_table(args.data, docs, rows)
    if args.lm:
        compare_lm(args.data, args.split, docs, rows, reasons, scores)

    if args.show_kept_dirty:
        print("\ndirty pages kept:")
        for i in dirty:
            if reasons[i] is None:
                print(f"  {docs[i].set} {docs[i].url or docs[i].file + ':' + docs[i].key}")
        print("clean documents rejected:")
        for i in clean:
            if reasons[i] is not None:
                print(f"  {docs[i].set} {docs[i].file}:{docs[i].key} {reasons[i]} ({rows[i]['lang']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
