"""`glmdata quality`: English and Chinese quality rules; every signal kept as a `q_*` column.

A map stage over langid's output. Each document goes through its language's chain of rule sets
(filters/english.py, filters/chinese.py, filters/blocklist.py), tokenized once and shared by every
rule; the first rule that fails is the rejection reason ("gopher_quality:min_words",
"zh:spam_density", ...) with the failing value as the detail. Kept documents carry every signal
the chain computed, as RedPajama-V2 publishes quality signals, so users can re-filter without
recomputing; C4's line cleaning rewrites English text, and the kept text is the cleaned text.
Documents whose `lang` is neither en nor zh see only the language-independent rules (URL and
word blocklists, and the blocklists on the page's title: filters/title.py). `q_score` (in [0, 1],
higher is better; dedup keeps the best of a cluster) is the classifier's probability when
`quality.classifier` names a model, else `heuristic_score`. `quality.sources` changes the rules for one
ingest source's documents (a book source past Gopher's word cap).

`glmdata quality train-classifier --positive F --negative F --out model.bin` trains that model.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import io
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

import filters
from filters.blocklist import (HashedNames, UrlBlocklist, WordBlocklist, decompressed, decompressed_chunks,
                               read_word_list)
from filters.chinese import (ChineseFineWebQuality, ChineseGopherQuality, ChineseGopherRepetition, ChineseNoise,
                             ChineseWebText,
                             LongDigitRuns, SpamDensity, chinese_words)
from filters.english import (C4Quality, FineWebQuality, GopherQuality, GopherRepetition, english_word_count,
                             english_words)
from filters.repetition import Rejection, RuleSet, Signals
from filters.title import TitleBlocklist, TitledDoc
from pipeline import storage
from pipeline.config import InputPath, UsageError, changed_settings, per_key_overrides, register_section
from pipeline.registry import register_command, register_stage
from pipeline.schema import TEXT_BEFORE_REWRITE
from pipeline.selection import source_matches, source_pattern
from pipeline.stage import BatchResult, MapStage, StageRun
from pipeline.stages.readers import ReadsWhatMixUses

DEFAULT_DATA = Path(filters.__file__).resolve().parent / "data"
log = logging.getLogger(__name__)


@dataclass
class EnglishRules:
    """Rule sets for `lang: en`, in order (FineWeb's order); null disables one."""

    # Defaults that differ from datatrove's, measured by bench/quality_labelled.py (docs/benchmarks.md):
    # spaCy makes every punctuation mark a word, so at Gopher's 0.8 share of words with a letter
    # 8% of edited English news fails (0.70-0.79); FineWeb's own C4 setting keeps lines without
    # terminal punctuation (C4's rewrite drops headings and hard-wrapped lines, then
    # `min_sentences` whole articles, and near-copies stop matching in dedup); a repeated line of
    # at most 30 characters (FineWeb's short line) is not a duplicate: captions, "Advertisement"
    # and table headers repeated in news fail FineWeb's 1% of duplicated characters; a page of
    # prose needs 3 sentences, not C4's 5 (short news items); FineWeb's line shares and C4's words
    # per line count a hard-wrapped paragraph as one line (book text ends most lines mid-sentence).
    gopher_repetition: GopherRepetition | None = field(
        default_factory=lambda: GopherRepetition(dup_short_line_chars=30))
    gopher_quality: GopherQuality | None = field(default_factory=lambda: GopherQuality(max_non_alpha_words_ratio=0.7))
    c4: C4Quality | None = field(
        default_factory=lambda: C4Quality(filter_no_terminal_punct=False, min_num_sentences_prose=3,
                                          join_hard_wrapped_lines=True))
    fineweb: FineWebQuality | None = field(
        default_factory=lambda: FineWebQuality(dup_short_line_chars=30, join_hard_wrapped_lines=True))


@dataclass
class ChineseRules:
    """Rule sets for `lang: zh`, in order; null disables one."""

    chinesewebtext: ChineseWebText | None = field(default_factory=ChineseWebText)
    digit_runs: LongDigitRuns | None = field(default_factory=LongDigitRuns)
    noise: ChineseNoise | None = field(default_factory=ChineseNoise)  # pinyin-annotated text, source code
    spam: SpamDensity | None = field(default_factory=SpamDensity)  # its `terms` add to spam_terms_files
    spam_terms_files: list[InputPath] = field(default_factory=lambda: [
        str(DEFAULT_DATA / "zh_spam_terms.txt"), str(DEFAULT_DATA / "zh_adult_terms.txt")])
    gopher_repetition: ChineseGopherRepetition | None = field(default_factory=ChineseGopherRepetition)
    fineweb: ChineseFineWebQuality | None = field(default_factory=ChineseFineWebQuality)
    gopher_quality: ChineseGopherQuality | None = field(default_factory=ChineseGopherQuality)


@register_section("quality")
@dataclass
class QualitySection:
    en: EnglishRules = field(default_factory=EnglishRules)
    zh: ChineseRules = field(default_factory=ChineseRules)
    # Language-independent rules (every document, whatever its lang), checked first; the shipped
    # lists and their licences: filters/data/NOTICE.md. Files may be .zst or .gz compressed.
    url_blocklists: list[InputPath] = field(default_factory=lambda: [
        str(DEFAULT_DATA / "ut1_domains.txt.zst"), str(DEFAULT_DATA / "url_blocklist.txt")])
    url_lists: list[InputPath] = field(default_factory=lambda: [str(DEFAULT_DATA / "ut1_urls.txt.zst")])
    url_banned_words: list[InputPath] = field(default_factory=lambda: [str(DEFAULT_DATA / "url_banned_words.txt")])
    url_soft_words: list[InputPath] = field(default_factory=lambda: [str(DEFAULT_DATA / "url_soft_banned_words.txt")])
    url_soft_word_threshold: int = 2
    url_banned_subwords: list[InputPath] = field(
        default_factory=lambda: [str(DEFAULT_DATA / "url_banned_subwords.txt")])
    url_host_terms: list[str] = field(default_factory=lambda: ["porn", "casino", "hentai"])
    word_blocklists: list[InputPath] = field(default_factory=lambda: [str(DEFAULT_DATA / "word_blocklist.txt")])
    word_blocklist_min_hits: int = 2
    soft_word_lists: list[InputPath] = field(default_factory=lambda: [str(DEFAULT_DATA / "url_soft_banned_words.txt")])
    # The page's title (ingest's `title` column) against word_blocklists and zh.spam_terms_files
    # (filters/title.py); its `words` and `spam_terms` add to those lists. null disables it.
    title: TitleBlocklist | None = field(default_factory=TitleBlocklist)
    # lang -> character n-gram LM from `glmdata quality train-lm` (CCNet's perplexity): adds
    # q_perplexity. Not in q_score: on the labelled sets it does not separate clean from dirty pages
    # (docs/benchmarks.md), so none is configured by default.
    perplexity_models: dict[str, InputPath] = field(default_factory=dict)
    classifier: InputPath | None = None  # fastText model from `glmdata quality train-classifier`
    classifier_min_score: dict[str, float] = field(default_factory=dict)  # lang -> minimum q_score
    # Per ingest source (the `source` column): changes to the keys above for its documents only, e.g. a
    # book source past Gopher's word cap: {gutenberg: {en: {gopher_quality: {max_doc_words: null}}}}.
    # A name may be a pattern, as in the mix's match_source ("pile/*"); an exact name, else the most
    # specific matching pattern, judges. The models are one for every source.
    sources: dict[str, QualitySection] = per_key_overrides("classifier", "perplexity_models")

    def __post_init__(self):
        if self.word_blocklist_min_hits < 1:
            raise ValueError("word_blocklist_min_hits: expected at least 1")
        for lang, score in self.classifier_min_score.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"classifier_min_score.{lang}: expected a probability in [0, 1], got {score}")
        if self.classifier_min_score and self.classifier is None:
            raise ValueError("classifier_min_score: set `classifier` to a model trained by "
                             "`glmdata quality train-classifier` first")


@dataclass
class Chain:
    tokenize: Callable[[str], list[str]] | None
    rule_sets: list[RuleSet]
    count_words: Callable[[str], int] | None = None

    def judge(self, text: str, url: str | None, signals: Signals,
              title: str | None = None) -> tuple[str, Rejection | None]:
        """(text after the rules, first failed rule or None)."""
        doc = TitledDoc(text, self.tokenize or str.split, url, self.count_words, title)
        for rule_set in self.rule_sets:
            rejection = rule_set.judge(doc, signals)
            if rejection is not None:
                return doc.text, rejection
        return doc.text, None


def _read_bytes(path: str) -> bytes:
    return decompressed(path, storage.read_bytes(path))


def _read_lists(paths: list[str]) -> list[str]:
    entries = []
    for path in paths:
        entries += read_word_list(_read_bytes(path).decode("utf-8").splitlines())
    return entries


@functools.lru_cache(maxsize=4)
def _name_set(paths: tuple[str, ...]) -> HashedNames:
    """The names of the files (UT1's millions of domains) as one hashed set, read once per process."""
    return HashedNames.from_chunks(chunk for p in paths for chunk in (*decompressed_chunks(p, storage.read_bytes(p)), b"\n"))


def heuristic_score(signals: Signals) -> float:
    """q_score without a classifier: the mean of the share of lines that end in terminal
    punctuation (FineWeb's line_punct_frac: prose rather than menus and lists) and one minus the
    share of characters in duplicated word 5-grams (Gopher: boilerplate and spam repeat); 0.5 when
    neither signal exists (languages other than en and zh)."""
    parts = []
    if "line_punct_frac" in signals:
        parts.append(signals["line_punct_frac"])
    if "dup_5gram_char_frac" in signals:
        parts.append(1.0 - signals["dup_5gram_char_frac"])
    return min(max(sum(parts) / len(parts), 0.0), 1.0) if parts else 0.5


def build_chains(s: QualitySection) -> dict[str | None, Chain]:
    """Rule sets per language (None: every other language) of a quality section."""
    url = UrlBlocklist(domains=_name_set(tuple(s.url_blocklists)), urls=_name_set(tuple(s.url_lists)),
                       banned_words=_read_lists(s.url_banned_words), soft_words=_read_lists(s.url_soft_words),
                       soft_word_threshold=s.url_soft_word_threshold,
                       banned_subwords=_read_lists(s.url_banned_subwords), host_terms=s.url_host_terms)
    words = WordBlocklist(words=_read_lists(s.word_blocklists), soft_words=_read_lists(s.soft_word_lists),
                          min_hits=s.word_blocklist_min_hits)
    spam_terms = _read_lists(s.zh.spam_terms_files)
    title = s.title and dataclasses.replace(s.title, words=_read_lists(s.word_blocklists) + s.title.words,
                                            spam_terms=spam_terms + s.title.spam_terms)
    common: list[RuleSet] = [url, words]
    en = [s.en.gopher_repetition, s.en.gopher_quality, s.en.c4, s.en.fineweb, title]
    spam = s.zh.spam and dataclasses.replace(s.zh.spam, terms=spam_terms + s.zh.spam.terms)
    zh = [s.zh.chinesewebtext, s.zh.digit_runs, s.zh.noise, spam, s.zh.gopher_repetition, s.zh.fineweb,
          s.zh.gopher_quality, title]
    # the title rule last: a page the text's rules reject keeps their reason; `zh:spam_title`
    # and `blocklist:title` count what the title adds
    return {"en": Chain(english_words, common + [r for r in en if r is not None], english_word_count),
            "zh": Chain(chinese_words, common + [r for r in zh if r is not None]),
            None: Chain(None, common + [title] * (title is not None))}


@register_stage
class QualityStage(ReadsWhatMixUses, MapStage):
    name = "quality"
    upstream = "langid"
    # 2: a kept null text stays null; 3: an English chunk over 1,000 characters without whitespace is tokenized
    # in pieces of 1,000 (filters.english.MAX_CHUNK_CHARS), not whole in time quadratic in its length
    output_version = 3
    batch_size = 256

    def __init__(self, cfg):
        super().__init__(cfg)
        ingest = cfg.sections.get("ingest")
        # A subset ("pile/PG-19") is known only once ingest has read the files: its source's name is checked.
        unused = [entry for entry in self.section.sources if ingest and not any(
            source_matches(s.name, [entry]) or (s.subset_field and source_matches(s.name, [entry.split("/", 1)[0]]))
            for s in ingest.sources)]
        if unused:
            log.warning("%s: quality.sources: %s: no such ingest source (ingest.sources: %s); those settings "
                        "judge no document", cfg.path, ", ".join(unused), ", ".join(s.name for s in ingest.sources))

    @cached_property
    def chains(self) -> dict[str | None, Chain]:
        """Rule sets per language (None: every other language) of every source `quality.sources` leaves
        alone, built once per worker."""
        return build_chains(self.section)

    @cached_property
    def source_chains(self) -> dict[str, dict[str | None, Chain]]:
        """`chains` of each source that `quality.sources` changes."""
        return {name: build_chains(section) for name, section in self.section.sources.items()}

    def sources_entry(self, source: str | None) -> str | None:
        """The `quality.sources` entry that judges `source`'s documents: the one naming it, else the most
        specific pattern matching it (the most characters besides `*` and `?`: "pile/PG-*" before "pile/*",
        patterns as in the mix's match_source); None: no entry matches."""
        matching = [entry for entry in self.section.sources if source_matches(source, [entry])]
        return max(matching, default=None,
                   key=lambda e: (source_pattern(e) is None, len(e) - e.count("*") - e.count("?")))

    @cached_property
    def signal_columns(self) -> dict[str, pa.DataType]:
        """Every q_* column, in a fixed order, so that every part file has the same schema."""
        columns: dict[str, pa.DataType] = {}
        for chains in (self.chains, *self.source_chains.values()):
            for chain in chains.values():
                for rule_set in chain.rule_sets:
                    for name, kind in rule_set.signal_types().items():
                        columns[f"q_{name}"] = pa.int64() if kind is int else pa.float64()
        if self.section.perplexity_models:
            columns["q_perplexity"] = pa.float64()
        columns["q_score"] = pa.float64()
        return columns

    def report_data(self, stage_run: StageRun) -> dict:
        """The settings `quality.sources` changes for a source's documents: the report says they were
        judged otherwise."""
        changed = {name: changed_settings(self.section, section) for name, section in self.section.sources.items()}
        return {"rules_changed_for_sources": changed} if changed else {}

    @cached_property
    def classifier_path(self) -> str:
        """The classifier model as a local file (fastText loads only those), fetched once per worker."""
        return storage.local_copy(self.section.classifier)

    @cached_property
    def perplexity_models(self) -> dict:
        """lang -> n-gram LM, fetched and loaded once per task (not per document: a remote model's
        size check is a request)."""
        from filters.perplexity import load_model

        return {lang: load_model(storage.local_copy(path)) for lang, path in self.section.perplexity_models.items()}

    def score(self, text: str, signals: Signals) -> float:
        if self.section.classifier is None:
            return heuristic_score(signals)
        from filters.classifier import quality_score

        return quality_score(self.classifier_path, text)

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist()
        urls = batch.column("url").to_pylist()
        names = batch.schema.names  # parts written before ingest kept titles have no title column
        titles = batch.column("title").to_pylist() if "title" in names else [None] * batch.num_rows
        out_texts, reasons, details = [], [], []
        before_rewrite: list[str | None] = []  # dedup hashes this text, not the line-cleaned one
        values: dict[str, list] = {name: [] for name in self.signal_columns}
        sources = batch.column("source").to_pylist() if self.source_chains else [None] * batch.num_rows
        entry_of = {source: self.sources_entry(source) for source in set(sources)}
        for text, lang, url, title, source in zip(texts, langs, urls, titles, sources):
            signals: Signals = {}
            entry = entry_of[source]
            chains = self.chains if entry is None else self.source_chains[entry]
            chain = chains.get(lang) or chains[None]
            cleaned, rejection = chain.judge(text or "", url, signals, title)
            if rejection is None:
                if lang in self.perplexity_models:
                    signals["perplexity"] = self.perplexity_models[lang].perplexity(cleaned)
                signals["score"] = self.score(cleaned, signals)
                minimum = self.section.sources.get(entry, self.section).classifier_min_score.get(lang)
                if minimum is not None and signals["score"] < minimum:
                    rejection = Rejection("classifier:min_score", signals["score"])
            out_texts.append(cleaned if rejection is None and text is not None else text)  # null stays null
            before_rewrite.append(text if rejection is None and cleaned != text else None)
            reasons.append(rejection and rejection.reason)
            details.append(rejection and rejection.detail)
            for name, column in values.items():
                column.append(signals.get(name[2:]))
        table = pa.Table.from_batches([batch])
        table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(out_texts, pa.string()))
        if TEXT_BEFORE_REWRITE in table.column_names:  # re-filtering a quality output: the first text stays
            earlier = table.column(TEXT_BEFORE_REWRITE).to_pylist()
            before_rewrite = [e if e is not None else b for e, b in zip(earlier, before_rewrite)]
            table = table.drop_columns([TEXT_BEFORE_REWRITE])
        table = table.append_column(TEXT_BEFORE_REWRITE, pa.array(before_rewrite, pa.string()))
        for name, kind in self.signal_columns.items():
            if name in table.column_names:  # re-filtering a quality output: the new values win
                table = table.drop_columns([name])
            table = table.append_column(pa.field(name, kind), pa.array(values[name], kind))
        return BatchResult(table, reasons, details)


# ---------------------------------------------------------------------------------------------
# glmdata quality train-classifier


def read_examples(path: str, text_field: str = "text") -> Iterator[str]:
    """Examples from a file: JSON lines (.jsonl, .jsonl.gz; the `text_field` of each object) or
    plain text, one example a line."""
    raw = storage.read_bytes(path)
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    lines = io.StringIO(raw.decode("utf-8", errors="replace"))
    is_jsonl = ".jsonl" in path or ".json" in path
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not is_jsonl:
            yield line
            continue
        try:
            yield json.loads(line)[text_field] or ""
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UsageError(f"{path}:{number}: expected a JSON object with a {text_field!r} field ({e})") from None


def _check_files(paths: list[str], what: str) -> None:
    for path in paths:
        if not storage.exists(path):
            raise UsageError(f"{path}: no such {what} file")
        if storage.is_dir(path):
            raise UsageError(f"{path}: a directory; expected an {what} file")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import at_least

    p.add_argument("--positive", required=True, nargs="+", metavar="FILE",
                   help="high-quality examples: .jsonl(.gz) with a text field, or text with one example a line")
    p.add_argument("--negative", required=True, nargs="+", metavar="FILE", help="low-quality examples, same formats")
    p.add_argument("--out", required=True, help="where to write the fastText model (.bin; local, gs:// or s3://)")
    p.add_argument("--text-field", default="text", help="JSON field holding the text (default: text)")
    p.add_argument("--epoch", type=at_least(1), default=25, help="training epochs (default 25)")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    p.add_argument("--word-ngrams", type=at_least(1), default=2, help="word n-gram features (default 2)")
    p.add_argument("--dim", type=at_least(1), default=64, help="embedding size (default 64)")
    p.add_argument("--bucket", type=at_least(1), default=2_000_000,
                   help="hash buckets for word n-grams; the model is bucket x dim x 4 bytes (default 2000000, "
                        "fastText's: 512 MB at dim 64)")
    p.add_argument("--holdout-every", type=at_least(0), default=10,
                   help="hold out every N-th example for the printed evaluation (0: none; default 10)")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the example shuffle and of fastText: the same seed and examples give the same "
                        "model (default 1234)")


@register_command("quality", "train-classifier", "train a fastText quality classifier from positive and "
                  "negative example files", _train_arguments)
def train_classifier_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from filters.classifier import TrainingUnavailable, train

    console = Console(stderr=True)
    _check_files(args.positive + args.negative, "example")
    positive = [t for p in args.positive for t in read_examples(p, args.text_field)]
    negative = [t for p in args.negative for t in read_examples(p, args.text_field)]
    console.print(f"training on {len(positive)} positive and {len(negative)} negative examples")
    try:
        with console.status("training fastText"):
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "model.bin")
                ev = train(positive, negative, local, epoch=args.epoch, lr=args.lr, word_ngrams=args.word_ngrams,
                           dim=args.dim, bucket=args.bucket, holdout_every=args.holdout_every, seed=args.seed)
                with open(local, "rb") as f, storage.atomic_output(args.out) as out:
                    shutil.copyfileobj(f, out, 1 << 24)
    except (TrainingUnavailable, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 1
    where = "held-out" if args.holdout_every else "training"
    console.print(f"wrote {args.out}; on {ev.examples} {where} examples at 0.5: precision {ev.precision:.3f}, "
                  f"recall {ev.recall:.3f}, accuracy {ev.accuracy:.3f}")
    console.print(f"use it: quality.classifier: {args.out}  and  quality.classifier_min_score: {{en: 0.5, zh: 0.5}}")
    return 0


# ---------------------------------------------------------------------------------------------
# glmdata quality train-lm


def _train_lm_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import at_least

    p.add_argument("--input", required=True, nargs="+", metavar="FILE",
                   help="clean prose of one language (Wikipedia, news): .jsonl(.gz) with a text field, or text "
                        "with one document a line")
    p.add_argument("--out", required=True, help="where to write the model (.npz; local, gs:// or s3://)")
    p.add_argument("--text-field", default="text", help="JSON field holding the text (default: text)")
    p.add_argument("--order", type=at_least(1), default=5, help="longest character n-gram (default 5)")
    p.add_argument("--buckets", type=at_least(1), default=1 << 18,
                   help="hash buckets per order; the model holds order x buckets 16-bit counts (default 262144)")


@register_command("quality", "train-lm", "train a character n-gram language model for q_perplexity "
                  "(quality.perplexity_models) from clean prose", _train_lm_arguments)
def train_lm_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from filters.perplexity import train

    console = Console(stderr=True)
    _check_files(args.input, "input")
    texts = [t for p in args.input for t in read_examples(p, args.text_field)]
    try:
        model = train(texts, order=args.order, buckets=args.buckets)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.npz")
        model.save(local)
        with open(local, "rb") as f, storage.atomic_output(args.out) as out:
            shutil.copyfileobj(f, out, 1 << 24)
    console.print(f"wrote {args.out} from {len(texts)} documents; median perplexity of the training "
                  f"documents {math.exp(model.quantiles[50]):.1f}")
    console.print(f"use it: quality.perplexity_models: {{<lang>: {args.out}}}")
    return 0
