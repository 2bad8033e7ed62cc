"""Near-duplicate detection quality on real prose: the dedup stage vs datasketch.MinHashLSH.

Builds a benchmark from ../shared/data/text and ../shared/data/jsonl: for a sample of real
documents, one copy each with realistic edits (boilerplate and teasers of other articles added,
sentences deleted, paragraphs reordered, Traditional <-> Simplified conversion, whitespace and
punctuation changes, word typos) at random strengths, so the copies' true Jaccard similarities
spread over 0.5..1 around the threshold; every other document is an unrelated distractor.

Truth is the exact Jaccard of the shingle sets (the shingling under test) >= threshold, over:
the planted pairs, every pair any method predicts, and the candidates of a wide LSH (40 bands x
3 rows, which finds pairs at Jaccard 0.5 with probability > 0.99) checked exactly, so natural
duplicates already in the sources count too.

Methods, per language and Chinese shingling (characters, jieba words):
* `stage`: the whole dedup stage on Spark local mode (pairs = documents in one cluster);
* `stage, no verify`: the same with the exact-Jaccard check of candidates off;
* `datasketch`: `MinHashLSH(threshold, num_perm)` over datasketch's own MinHash (sha1) of the
  same shingles; pairs = query results.

    .venv/bin/python bench/dedup_quality.py [--pairs 300] [--threshold 0.8]

`--pipeline` (issue 14): the same documents through the default pipeline before dedup (one JSON
lines dump, `run_pipeline` up to dedup, every config section at its default). Per language and
per half (`tune`/`report`, by a hash of the original's text): true pairs, how many lost a member
before dedup (and to which stage and rule, original or copy), recall among the pairs reaching dedup
and among all, the share of true pairs of which at most one copy is left, precision of dedup's
removals (document and survivor in one component of true pairs); misses by edit kind, with their
Jaccard on the text dedup hashed.

    .venv/bin/python bench/dedup_quality.py --pipeline [--engine spark|beam] [--set dedup.bands=21 ...]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from filters.minhash import MinHasher, Shingling, band_hashes  # noqa: E402
from filters.normalize import to_simplified, to_traditional  # noqa: E402
from pipeline import storage  # noqa: E402
from pipeline.stages import load_config  # noqa: E402
from pipeline.dedup.fixtures import clustered_pairs, read_dedup_output, write_finished_upstream  # noqa: E402
from pipeline.engines.spark import SparkEngine  # noqa: E402
from pipeline.runner import run_stage  # noqa: E402
from pipeline.schema import TEXT_BEFORE_REWRITE  # noqa: E402
from pipeline.stages.dedup import DedupStage  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
console = Console(width=170)

# ---------------------------------------------------------------------------------------------
# Real documents


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_documents() -> dict[str, list[str]]:
    text = SHARED / "text"
    en = [r["text"] for r in _jsonl(text / "en-news-scrapinghub.jsonl") + _jsonl(text / "en-speeches-sotu.jsonl")]
    en += [r["text"] for name in ("cc_en_head-0091.jsonl.gz", "cc_en_head-0174.jsonl.gz") for r in _jsonl(SHARED / "jsonl" / name)]
    for book in _jsonl(text / "en-books-gutenberg.jsonl"):  # whole books -> chapter-sized documents
        paragraphs = book["text"].split("\n\n")
        chunk: list[str] = []
        for p in paragraphs[40:]:
            chunk.append(p)
            if sum(map(len, chunk)) > 4000:
                en.append("\n\n".join(chunk))
                chunk = []
    zh = [r["text"] for name in ("zh-news-thucnews.jsonl", "zh-wiki-cmrc2018.jsonl", "zh-hant-wiki-drcd.jsonl")
          for r in _jsonl(text / name)]
    zh += [r["raw_content"] for r in _jsonl(SHARED / "jsonl" / "chinesewebtext-cc-2021-43-zh.jsonl")]
    return {"en": [t for t in en if len(t) >= 800], "zh": [t for t in zh if len(t) >= 300]}


# ---------------------------------------------------------------------------------------------
# Realistic edits

BOILERPLATE = {
    "en": ["Share this article", "Subscribe to our newsletter for the latest updates.", "Advertisement",
           "Copyright © 2024 Example Media Group. All rights reserved.", "Related stories", "Read more:",
           "We use cookies to improve your experience. By continuing you agree to our cookie policy.",
           "Sign up for free to get unlimited access.", "Follow us on social media", "Comments (12)"],
    "zh": ["版权所有 © 2020 新浪网", "责任编辑：王明", "点击进入专题", "免责声明：本文仅代表作者个人观点，与本网无关。",
           "扫描二维码关注我们", "相关阅读：", "更多精彩内容，请关注我们的微信公众号。", "返回首页", "分享到：微博 微信 QQ空间"],
}
_SENTENCE = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}


def edit(text: str, lang: str, others: list[str], rng: random.Random, kinds: list[str] | None = None) -> str:
    """An edited copy of `text`; the edits applied are appended to `kinds` when given."""
    kinds = [] if kinds is None else kinds
    strength = rng.uniform(0.0, 0.3)
    paragraphs = [p for p in text.split("\n") if p.strip()]
    # delete sentences
    delete = rng.uniform(0, strength)
    kept, deleted = [], 0
    for p in paragraphs:
        sentences = [s for s in _SENTENCE[lang].split(p) if s]
        kept_sentences = [s for s in sentences if rng.random() >= delete] or sentences[:1]
        deleted += len(sentences) - len(kept_sentences)
        kept.append((" " if lang == "en" else "").join(kept_sentences))
    if deleted:
        kinds.append("sentences deleted")
    paragraphs = kept
    if len(paragraphs) >= 3 and rng.random() < 0.5:  # reorder two paragraphs
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
        kinds.append("paragraphs swapped")
    if lang == "en" and rng.random() < 0.5:  # typos
        words = "\n".join(paragraphs).split(" ")
        for k in rng.sample(range(len(words)), int(len(words) * rng.uniform(0, strength / 10))):
            words[k] = words[k][::-1]
        paragraphs = " ".join(words).split("\n")
        kinds.append("typos")
    # add boilerplate and teasers of other articles, up to `strength` of the length
    added, budget = [], (strength - delete) * len(text)
    while sum(map(len, added)) < budget:
        if rng.random() < 0.5:
            added.append(rng.choice(BOILERPLATE[lang]))
        else:
            other = rng.choice(others)
            start = rng.randrange(max(1, len(other) - 200))
            added.append(other[start:start + rng.randint(60, 200)])
    cut = rng.randint(0, len(added))
    out = "\n".join(added[:cut] + paragraphs + added[cut:])
    if added:
        kinds.append("boilerplate/teasers added")
    if lang == "zh" and rng.random() < 0.5:  # script conversion
        out = to_simplified(out) if to_simplified(out) != out else to_traditional(out)
        kinds.append("script converted")
    if rng.random() < 0.5:  # punctuation style
        table = {"en": {"’": "'", "“": '"', "”": '"', "—": " - ", ",": " ,"},
                 "zh": {"，": ",", "。": ".", "：": ":", "“": '"', "”": '"', "（": "(", "）": ")"}}[lang]
        out = out.translate(str.maketrans({k: v for k, v in table.items()}))
        kinds.append("punctuation changed")
    if rng.random() < 0.5:  # whitespace
        out = re.sub(r" ", lambda m: "  " if rng.random() < 0.1 else " ", out).replace("\n", "\n\n")
        kinds.append("whitespace changed")
    return out


def build(docs: dict[str, list[str]], n_pairs: int, seed: int,
          kinds: dict[str, list[str]] | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every document, and an edited copy `<id>-copy` of the first `n_pairs` per language (after a
    seeded shuffle); the edits of each copy go to `kinds` when given."""
    rng = random.Random(seed)
    kinds = {} if kinds is None else kinds
    rows, planted = [], []
    for lang, texts in docs.items():
        texts = texts[:]
        rng.shuffle(texts)
        for i, text in enumerate(texts):
            rows.append({"id": f"{lang}{i:05d}", "text": text, "lang": lang})
            if i < n_pairs:
                copy = f"{lang}{i:05d}-copy"
                rows.append({"id": copy, "text": edit(text, lang, texts, rng, kinds.setdefault(copy, [])), "lang": lang})
                planted.append((f"{lang}{i:05d}", copy))
    return rows, planted


def split_of(doc: str, rows_by_id: dict[str, dict]) -> str:
    """`tune` or `report`, by a hash of the base document's text (a copy goes with its original),
    so that a default chosen on one half is judged on the other."""
    base = rows_by_id[doc.removesuffix("-copy")]["text"]
    return "tune" if hashlib.sha1(base.encode()).digest()[0] % 2 == 0 else "report"


# ---------------------------------------------------------------------------------------------
# Truth and methods


class Truth:
    """Exact Jaccard of shingle sets, cached per document."""

    def __init__(self, rows: list[dict], shingling: Shingling):
        self.by_id = {r["id"]: r for r in rows}
        self.shingling = shingling
        self._sets: dict[str, set] = {}

    def shingles(self, doc: str) -> set:
        if doc not in self._sets:
            r = self.by_id[doc]
            self._sets[doc] = set(self.shingling.shingles(r["text"], r["lang"]))
        return self._sets[doc]

    def jaccard(self, a: str, b: str) -> float:
        sa, sb = self.shingles(a), self.shingles(b)
        return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def wide_candidates(rows: list[dict], shingling: Shingling) -> set[tuple[str, str]]:
    """Pairs sharing a band of a 40 x 3 LSH: every pair with Jaccard >= 0.5 (P > 0.99)."""
    sig = MinHasher(120, 99, shingling).signatures([r["text"] for r in rows], [r["lang"] for r in rows])
    keys = band_hashes(sig, 40, 3)
    buckets: dict[tuple[int, int], list[str]] = {}
    for r, row_keys in zip(rows, keys):
        for band, key in enumerate(row_keys):
            buckets.setdefault((band, int(key)), []).append(r["id"])
    return {tuple(sorted(p)) for ids in buckets.values() if 1 < len(ids) < 50 for p in combinations(ids, 2)}


def datasketch_pairs(rows: list[dict], shingling: Shingling, threshold: float, num_perm: int) -> set[tuple[str, str]]:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches = {}
    for r in track(rows, description="datasketch MinHash", console=console, transient=True):
        m = MinHash(num_perm=num_perm)
        m.update_batch([s.encode("utf-8") for s in shingling.shingles(r["text"], r["lang"])])
        sketches[r["id"]] = m
        lsh.insert(r["id"], m)
    return {tuple(sorted((doc, other))) for doc, m in sketches.items() for other in lsh.query(m) if other != doc}


def stage_pairs(engine: SparkEngine, workdir: Path, rows: list[dict], section: dict) -> tuple[set, float]:
    workdir.mkdir(parents=True)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({"run": {"workdir": str(workdir / "out"), "spark": {"master": "local[2]"}},
                                        "dedup": {**section, "url": False}}, allow_unicode=True))
    cfg = load_config(cfg_path)
    write_finished_upstream(cfg.run.workdir, [[{**r, "q_score": 0.5} for r in rows[i::4]] for i in range(4)])
    started = time.perf_counter()
    run_stage(DedupStage(cfg), engine, force=True)
    return clustered_pairs(read_dedup_output(storage.join(cfg.run.workdir, "dedup"))), time.perf_counter() - started


def score(pred: set, truth_pairs: set, truth: Truth, threshold: float, lang: str) -> tuple[int, float, float]:
    pred = {p for p in pred if p[0].startswith(lang)}
    positives = {p for p in truth_pairs if p[0].startswith(lang)}
    true_pred = {p for p in pred if truth.jaccard(*p) >= threshold}
    return len(pred), len(true_pred) / max(1, len(pred)), len(true_pred & positives) / max(1, len(positives))


# ---------------------------------------------------------------------------------------------
# The default pipeline in front of dedup (--pipeline)

BEFORE_DEDUP = ("ingest", "langid", "quality", "pii")


def pipeline_fates(rows: list[dict], workdir: Path, engine_name: str,
                   overrides: dict | None = None) -> tuple[dict[str, tuple[str, str, str | None]], dict[str, str]]:
    """Every row through `glmdata run` up to dedup with every section at its default (ingest of a
    JSON lines dump, langid, quality, pii, dedup). Returns {row id: (stage or "kept", reason,
    survivor row id for dup_* rejections)} and {row id: the text dedup hashed} for the rows that
    reached it. Rows are matched through `record_id` (ingest's own ids differ). `overrides`:
    config sections to set instead of their defaults ({"dedup": {"bands": 21, "rows": 6}})."""
    import pyarrow.parquet as pq
    from pipeline.engines import make_engine
    from pipeline.run_all import run_pipeline

    workdir.mkdir(parents=True)
    dump = workdir / "input.jsonl"
    with dump.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "run": {"workdir": str(workdir / "out"), "engine": engine_name, "spark": {"master": "local[2]"}},
        "ingest": {"sources": [{"name": "bench", "format": "jsonl", "paths": [str(dump)]}]}, **(overrides or {})}))
    cfg = load_config(cfg_path)
    engine = make_engine(cfg)
    try:
        run_pipeline(cfg, engine, last="dedup", report=False, console=Console(quiet=True))
    finally:
        engine.close()
    out = workdir / "out"
    stats = json.loads((out / "dedup" / "stats.json").read_text())
    console.print("dedup stats: " + ", ".join(f"{k}={v}" for k, v in _flat(stats).items() if "candidate" in k or "rounds" in k))

    def table(stage: str, kind: str, columns: list[str]) -> list[dict]:
        return [r for f in sorted((out / stage / kind).rglob("*.parquet")) for r in pq.read_table(f, columns=columns).to_pylist()]

    by_doc_id = {r["id"]: r["record_id"] for r in table("ingest", "data", ["id", "record_id"])}
    fates = {r["record_id"]: ("kept", "", None) for r in table("dedup", "data", ["record_id"])}
    for stage in (*BEFORE_DEDUP, "dedup"):
        for r in table(stage, "rejected", ["record_id", "reject_reason", "reject_detail"]):
            survivor = None
            if r["reject_reason"].startswith("dup_"):
                survivor = by_doc_id[r["reject_detail"].split(" in run ")[0]]
            fates[r["record_id"]] = (stage, r["reject_reason"], survivor)
    missing = [r["id"] for r in rows if r["id"] not in fates]
    if missing:  # every stage accounts for every document: an unaccounted row is a bench or stage bug
        raise RuntimeError(f"{len(missing)} documents neither kept nor rejected, e.g. {missing[:5]}")
    hashed = {}  # quality keeps the text it rewrote in TEXT_BEFORE_REWRITE, and dedup hashes that
    for f in sorted((out / "pii" / "data").rglob("*.parquet")):
        part = pq.read_table(f)
        before = part.column(TEXT_BEFORE_REWRITE).to_pylist() if TEXT_BEFORE_REWRITE in part.column_names else []
        for i, (doc, text) in enumerate(zip(part.column("record_id").to_pylist(), part.column("text").to_pylist())):
            hashed[doc] = (before[i] if before else None) or text
    return fates, hashed


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def true_groups(positives: set[tuple[str, str]]) -> dict[str, str]:
    """Document -> representative of its connected component of true near-duplicate pairs."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in positives:
        parent[find(a)] = find(b)
    return {x: find(x) for x in parent}


@dataclass
class PipelineScore:
    """One language and half of --pipeline: pairs are (original, copy) or (smaller id, larger id)."""

    true_pairs: int = 0
    reaching: int = 0  # true pairs whose members both reached dedup
    found: int = 0  # of those, clustered by dedup
    one_left: int = 0  # true pairs of which at most one member is in the output (any stage removed it)
    removals: int = 0  # documents dedup rejected as dup_* of a survivor
    correct_removals: int = 0  # of those, in one component of true pairs with their survivor
    paragraph_rejects: int = 0
    missed: list[tuple[str, str]] = field(default_factory=list)
    per_kind: dict[str, list[int]] = field(default_factory=dict)  # edit -> [found, reaching]
    early: Counter = field(default_factory=Counter)  # "<original|copy> <stage>: <reason>" -> documents

    @property
    def recall_reaching(self) -> float:
        return self.found / max(1, self.reaching)

    @property
    def recall_all(self) -> float:
        return self.found / max(1, self.true_pairs)

    @property
    def precision(self) -> float:
        return self.correct_removals / max(1, self.removals)


def score_pipeline(fates: dict, rows: list[dict], positives: set[tuple[str, str]],
                   kinds: dict[str, list[str]]) -> dict[tuple[str, str], PipelineScore]:
    """{(language, half): PipelineScore} from the documents' fates and the true pairs."""
    by_id = {r["id"]: r for r in rows}
    group = true_groups(positives)
    clustered = clustered_pairs({"rejected": {d: (reason, s) for d, (stage, reason, s) in fates.items() if stage == "dedup"}})
    scores = {(lang, half): PipelineScore() for lang in ("en", "zh") for half in ("tune", "report")}
    for p in positives:
        score = scores[(p[0][:2], split_of(p[0], by_id))]
        score.true_pairs += 1
        gone = [d for d in p if fates[d][0] in BEFORE_DEDUP]
        score.early.update(f"{'copy' if d.endswith('-copy') else 'original'} {fates[d][0]}: {fates[d][1]}" for d in gone)
        score.one_left += p in clustered or any(fates[d][0] != "kept" for d in p)
        if gone:
            continue
        score.reaching += 1
        score.found += p in clustered
        if p not in clustered:
            score.missed.append(p)
        for kind in kinds.get(p[1], ["(not planted)"]):
            score.per_kind.setdefault(kind, [0, 0])
            score.per_kind[kind][0] += p in clustered
            score.per_kind[kind][1] += 1
    for d, (stage, reason, survivor) in fates.items():
        if stage != "dedup":
            continue
        score = scores[(d[:2], split_of(d, by_id))]
        if survivor is None:
            score.paragraph_rejects += 1
        else:
            score.removals += 1
            score.correct_removals += d in group and group[d] == group.get(survivor)
    return scores


def print_pipeline_scores(scores: dict[tuple[str, str], PipelineScore], truth: Truth, hashed: Truth,
                          threshold: float, kinds: dict[str, list[str]]) -> None:
    main = Table(title=f"dedup after the default pipeline (ingest, langid, quality, pii), true pairs at Jaccard >= {threshold}")
    for col in ("language", "split", "true pairs", "removed before dedup", "reach dedup", "found",
                "recall (reaching)", "recall (all)", "one copy left (any stage)", "dedup removals", "precision",
                "paragraph_dedup rejects"):
        main.add_column(col)
    kind_table = Table(title="true planted pairs that reach dedup, by edit (a copy has several): found / total")
    for col in ("language", "split", "edit", "found", "total", "recall"):
        kind_table.add_column(col)
    for (lang, half), s in scores.items():
        main.add_row(lang, half, str(s.true_pairs), str(s.true_pairs - s.reaching), str(s.reaching), str(s.found),
                     f"{s.recall_reaching:.4f}", f"{s.recall_all:.4f}", f"{s.one_left / max(1, s.true_pairs):.4f}",
                     str(s.removals), f"{s.precision:.4f}", str(s.paragraph_rejects))
        for kind, (hit, total) in sorted(s.per_kind.items()):
            kind_table.add_row(lang, half, kind, str(hit), str(total), f"{hit / total:.3f}")
        for a, b in sorted(s.missed):
            console.print(f"missed: {a} {b} Jaccard {truth.jaccard(a, b):.3f}, on the text dedup hashed "
                          f"{hashed.jaccard(a, b):.3f}; edits {kinds.get(b, ['(not planted)'])}")
        if s.early:
            console.print(f"{lang} {half}: documents of true pairs removed before dedup: "
                          + ", ".join(f"{k} x{v}" for k, v in s.early.most_common()))
    console.print(main)
    console.print(kind_table)


def parse_overrides(settings: list[str]) -> dict:
    """["dedup.bands=21", "dedup.rows=6"] -> {"dedup": {"bands": 21, "rows": 6}} (values as YAML)."""
    out: dict = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    return out


def run_pipeline_mode(args) -> None:
    kinds: dict[str, list[str]] = {}
    rows, planted = build(load_documents(), args.pairs, args.seed, kinds)
    console.print(f"{len(rows)} documents ({sum(len(r['text'].encode()) for r in rows) / 1e6:.1f} MB), "
                  f"{len(planted)} planted copies; every section of the config at its default")
    shingling = Shingling()
    truth = Truth(rows, shingling)
    started = time.process_time()
    with tempfile.TemporaryDirectory(prefix="dedup-quality-pipeline-") as tmp:
        fates, hashed_text = pipeline_fates(rows, Path(tmp) / "run", args.engine, parse_overrides(args.set))
    console.print(f"pipeline run: {time.process_time() - started:.1f} CPU s in the driver")
    predicted = {tuple(sorted((d, s))) for d, (stage, _, s) in fates.items() if s is not None}
    candidates = wide_candidates(rows, shingling) | set(planted) | predicted
    positives = {p for p in candidates if truth.jaccard(*p) >= args.threshold}
    hashed = Truth([{**r, "text": hashed_text.get(r["id"], "")} for r in rows], shingling)
    print_pipeline_scores(score_pipeline(fates, rows, positives, kinds), truth, hashed, args.threshold, kinds)
    group = true_groups(positives)
    wrong = [(d, s) for d, (stage, _, s) in fates.items() if s is not None and (d not in group or group[d] != group.get(s))]
    for d, s in wrong[:20]:
        console.print(f"false removal: {d} (survivor {s}) Jaccard {truth.jaccard(d, s):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=300, help="planted copies per language (default 300)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pipeline", action="store_true",
                    help="run every document through the default pipeline (ingest, langid, quality, pii) before dedup, "
                         "all defaults; recall and precision per language and tune/report split")
    ap.add_argument("--engine", choices=["spark", "beam"], default="spark", help="engine of --pipeline")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="--pipeline: a config value instead of its default (repeatable), e.g. dedup.bands=21")
    args = ap.parse_args()
    if args.pipeline:
        run_pipeline_mode(args)
        return

    rows, planted = build(load_documents(), args.pairs, args.seed)
    console.print(f"{len(rows)} documents ({sum(len(r['text'].encode()) for r in rows) / 1e6:.1f} MB), "
                  f"{len(planted)} planted copies")
    table = Table(title=f"near duplicates at Jaccard >= {args.threshold} (precision / recall vs exact Jaccard)")
    for col in ("language", "shingles", "method", "pairs", "precision", "recall", "seconds"):
        table.add_column(col)
    with tempfile.TemporaryDirectory(prefix="dedup-quality-") as tmp:
        cfg_path = Path(tmp) / "engine.yaml"
        cfg_path.write_text(yaml.safe_dump({"run": {"workdir": str(Path(tmp) / "engine"), "spark": {"master": "local[2]"}}}))
        engine = SparkEngine(load_config(cfg_path))
        try:
            for zh_tokens in ("char", "word"):
                shingling = Shingling(zh_tokens=zh_tokens)
                truth = Truth(rows, shingling)
                candidates = wide_candidates(rows, shingling) | set(planted)
                positives = {p for p in candidates if truth.jaccard(*p) >= args.threshold}
                hist = Counter(min(9, int(truth.jaccard(*p) * 10)) for p in planted)
                console.print(f"zh_tokens={zh_tokens}: planted-pair Jaccard deciles "
                              f"{dict(sorted(hist.items()))}; true pairs {len(positives)}")
                section = {"threshold": args.threshold, "num_perm": args.num_perm, "zh_tokens": zh_tokens}
                methods = {}
                for name, extra in (("stage", {}), ("stage, no verify", {"verify": False})):
                    methods[name] = stage_pairs(engine, Path(tmp) / f"{zh_tokens}-{len(methods)}", rows, {**section, **extra})
                started = time.perf_counter()
                ds = datasketch_pairs(rows, shingling, args.threshold, args.num_perm)
                methods["datasketch MinHashLSH"] = (ds, time.perf_counter() - started)
                for lang in ("en", "zh"):
                    if lang == "en" and zh_tokens == "word":
                        continue  # English shingles do not depend on the Chinese setting
                    for name, (pred, seconds) in methods.items():
                        n, precision, recall = score(pred, positives, truth, args.threshold, lang)
                        table.add_row(lang, "word 5-grams" if lang == "en" else f"{zh_tokens} 5-grams", name,
                                      str(n), f"{precision:.4f}", f"{recall:.4f}", f"{seconds:.1f}")
        finally:
            engine.close()
    console.print(table)


if __name__ == "__main__":
    main()
