"""tokenizer: train the shared SentencePiece model on a balanced EN/ZH sample of the mix.

1. Census, on the engine: bytes of unique documents per language (repeats of the mix do not count:
   a document drawn twice must not weigh twice in the vocabulary).
2. Sample, on the engine: each language gets `sample_bytes * share` (equal bytes of English and
   Chinese by default, as GLM-130B's icetk: 25 GB, half each), lowered for every language when one
   has less than its part, so the balance holds. A document is drawn when a seeded hash of its id
   falls below its language's rate; a separate slice of the hash range is held out for the
   evaluation figures. Each task writes its drawn documents as training lines (tokenizer/train.py).
3. Train, on the driver: the parts are joined into one file and SentencePiece trains on it with
   every core. Writes <stage>/tokenizer.model, tokenizer.vocab, heldout/ and the evaluation
   figures (stats.json "report").

When the mix counted its tokens with a model (`mix.count_tokens_with`, the second pass of the
two-pass mix) that model is the tokenizer: the stage takes it instead of training a new one on the
re-planned mix, so encode writes exactly the tokens the mix counted. The held-out figures still come.

Documents are accounted as: kept = in the training sample, dropped = held out, not drawn, repeats,
languages without a share. Nothing is written to data/: encode reads the mix itself.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import ConfigError, bounded, normalised_shares, register_section
from pipeline.registry import register_command, register_stage
from pipeline.sampling import seeded_uniform
from pipeline.stage import Stage, StageRun, StageStats, UnitWriter, iter_parquet_rows
from tokenizer.train import TrainSettings, train, write_training_lines

log = logging.getLogger(__name__)

MODEL_FILE = "tokenizer.model"
VOCAB_FILE = "tokenizer.vocab"
READ_COLUMNS = ["id", "text", "lang"]
MIN_VOCAB_SIZE = 300  # 256 byte pieces + the special tokens, with room to spare


@register_section("tokenizer")
@dataclass
class TokenizerSection:
    vocab_size: int = 32000  # demo size; GLM-130B's icetk had about 130k text pieces (configs/glm130b.yaml)
    model_type: Literal["unigram", "bpe"] = "unigram"  # icetk was a unigram model
    # training text, all languages (GLM-130B: 25 GB; SentencePiece holds it in memory)
    sample_bytes: int = bounded(200_000_000, low=1)
    language_shares: dict[str, float] = field(default_factory=lambda: {"en": 0.5, "zh": 0.5})  # of sample bytes, as mix's
    heldout_bytes: int = 2_000_000  # per language, held out of training for the evaluation figures
    # Characters with a piece of their own; rarer ones fall back to bytes. 0.998, not SentencePiece's
    # CJK 0.9995: the pieces go to words, English within 10% of an English-only model (tokenizer/train.py)
    character_coverage: float = TrainSettings.character_coverage
    # longer lines are cut before training (SentencePiece skips them silently); a character has up to 4
    # bytes, so a smaller limit could never cut a line of 4-byte characters
    max_line_bytes: int = bounded(8192, low=4)
    num_threads: int = 0  # 0: every core of the driver

    def __post_init__(self):
        self.language_shares = normalised_shares(self.language_shares, positive=True)
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 byte pieces + specials), "
                             f"got {self.vocab_size}")
        if not 0.98 <= self.character_coverage <= 1:  # SentencePiece's own bounds
            raise ValueError(f"character_coverage must be in [0.98, 1], got {self.character_coverage}")

    def settings(self, seed: int) -> TrainSettings:
        return TrainSettings(vocab_size=self.vocab_size, model_type=self.model_type,
                             character_coverage=self.character_coverage, max_line_bytes=self.max_line_bytes,
                             num_threads=self.num_threads, seed=seed)


def read_mix_part(path: str, batch_size: int = 4096):
    """Batches (id, text, lang, is_repeat) of one mix part."""
    pf = pq.ParquetFile(storage.open_input(path))
    has_repeat = "mix_repeat" in pf.schema_arrow.names
    for batch in pf.iter_batches(batch_size=batch_size, columns=READ_COLUMNS + ["mix_repeat"] * has_repeat):
        repeat = pc.fill_null(pc.greater(batch.column("mix_repeat"), 0), False) if has_repeat \
            else pa.array([False] * batch.num_rows)
        yield batch.select(READ_COLUMNS), repeat.to_numpy(zero_copy_only=False)


@dataclass
class LanguageBytes:
    """Engine task: UTF-8 bytes of unique documents per language in one mix part."""

    def __call__(self, path: str) -> dict:
        totals: dict[str, int] = defaultdict(int)
        for batch, repeat in read_mix_part(path):
            unique = batch.filter(pa.array(~repeat))
            table = pa.table({"lang": pc.fill_null(unique.column("lang"), ""),
                              "n": pc.fill_null(pc.binary_length(unique.column("text")), 0)})
            grouped = table.group_by("lang").aggregate([("n", "sum")])
            for lang, n in zip(grouped.column("lang").to_pylist(), grouped.column("n_sum").to_pylist()):
                totals[lang] += n
        return dict(totals)


@dataclass
class SampleRates:
    """Per language: documents with hash u < heldout go to held-out, heldout <= u < heldout + train to training."""

    heldout: dict[str, float]
    train: dict[str, float]
    train_bytes: dict[str, float]  # expected training bytes per language
    limited_by: str | None = None  # the language whose text sets the sample's size; None: sample_bytes does

    @classmethod
    def plan(cls, section: TokenizerSection, available: dict[str, int]) -> "SampleRates":
        shares = section.language_shares
        heldout = {lang: min(0.5, section.heldout_bytes / available[lang]) if available.get(lang) else 0.0
                   for lang in shares}
        # The largest total that keeps the shares with what each language has.
        most = {lang: available.get(lang, 0) * (1 - heldout[lang]) / share for lang, share in shares.items()}
        scarcest = min(most, key=most.get)
        total = min(section.sample_bytes, most[scarcest])
        train_bytes = {lang: total * share for lang, share in shares.items()}
        train = {lang: train_bytes[lang] / available[lang] if available.get(lang) else 0.0 for lang in shares}
        return cls(heldout, train, train_bytes, scarcest if most[scarcest] < section.sample_bytes else None)


@register_stage
class TokenizerStage(Stage):
    name = "tokenizer"
    upstream = "mix"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rates: SampleRates | None = None
        self._report: dict = {}
        mix = cfg.sections.get("mix")
        self.fixed_model: str | None = getattr(mix, "count_tokens_with", None)
        # The mix writes only the languages it gives tokens (a source takes no document of another
        # language): one it lacks fails here, when the run starts, not once the mix is written.
        absent = [lang for lang in self.section.language_shares if mix and not mix.language_shares.get(lang)]
        if absent:
            raise self._lacking(absent, " (mix.language_shares gives them no tokens)")

    def _lacking(self, langs: list[str], why: str = "") -> ConfigError:
        return ConfigError(f"{self.cfg.path}: tokenizer.language_shares: asks for {self.section.language_shares}, "
                           f"but the mix has no {', '.join(langs)} documents{why}")

    def setup_driver(self, stage_run: StageRun) -> None:
        parts = self.units(stage_run)
        available: dict[str, int] = defaultdict(int)
        for counts in stage_run.engine.map_units("tokenizer census", LanguageBytes(), parts):
            for lang, n in counts.items():
                available[lang] += n
        self.rates = SampleRates.plan(self.section, available)
        missing = [lang for lang in self.section.language_shares if not available.get(lang)]
        if missing:
            raise self._lacking(missing)
        wanted = self.section.sample_bytes
        got = sum(self.rates.train_bytes.values())
        if got < wanted * 0.999 and got < sum(available.values()) * 0.9:
            log.warning("tokenizer: sample is %s MB, not %s MB: keeping the language shares %s leaves %s",
                        f"{got / 1e6:,.1f}", f"{wanted / 1e6:,.1f}", self.section.language_shares,
                        {lang: f"{available.get(lang, 0) / 1e6:,.1f} MB available" for lang in self.section.language_shares})

    def process_unit(self, unit_index: int, unit: str, out: UnitWriter) -> None:
        part = f"part-{unit_index:05d}"
        heldout = storage.ParquetSink(storage.join(out.stage_dir, "heldout", part + ".parquet"))
        with storage.atomic_output(storage.join(out.stage_dir, "sample", part + ".txt")) as raw:
            lines = _TextSink(raw)
            for batch, repeat in read_mix_part(unit):
                ids, texts, langs = (batch.column(c).to_pylist() for c in READ_COLUMNS)
                held = []
                for i, (doc_id, text, lang) in enumerate(zip(ids, texts, langs)):
                    nbytes = len(text.encode()) if text else 0
                    out.consumed(1, nbytes)
                    reason = self._decide(doc_id, lang, bool(repeat[i]))
                    if reason is None:
                        out.stats.kept.add(1, nbytes)
                        if not self.fixed_model:
                            write_training_lines(text or "", lines, self.section.max_line_bytes)
                    else:
                        out.drop_uncounted_rows(reason, 1, nbytes)
                        if reason == "tokenizer_heldout":
                            held.append(i)
                if held:
                    heldout.write(batch.take(pa.array(held)))
            lines.flush()
        heldout.close()

    def _decide(self, doc_id: str, lang: str | None, is_repeat: bool) -> str | None:
        """None: into the training sample; else the reason it is not."""
        if is_repeat:
            return "tokenizer_mix_repeat"
        if lang not in self.rates.train:
            return "tokenizer_other_language"
        u = seeded_uniform(self.seed, doc_id, "tokenizer")
        if u < self.rates.heldout[lang]:
            return "tokenizer_heldout"
        if u < self.rates.heldout[lang] + self.rates.train[lang]:
            return None
        return "tokenizer_not_sampled"

    def execute(self, stage_run: StageRun) -> StageStats:
        stats = super().execute(stage_run)
        settings = self.section.settings(self.seed)
        if self.fixed_model:
            _console().print(f"tokenizer: mix.count_tokens_with fixes the model: {self.fixed_model} (not trained again; "
                             "evaluated on the held-out documents)")
            model, sample_bytes, train_seconds = storage.read_bytes(self.fixed_model), 0, 0.0
        else:
            model, sample_bytes, train_seconds = self._train(stage_run, settings, stats)
        storage.rmtree(storage.join(stage_run.tmp_dir, "sample"))
        from tokenizer.spm import load_proto

        tok = load_proto(model)
        tok.check_special_tokens()
        storage.write_bytes(storage.join(stage_run.tmp_dir, MODEL_FILE), model)
        storage.write_text(storage.join(stage_run.tmp_dir, VOCAB_FILE), vocab_text(tok))
        evaluation = evaluate_parquet(tok, storage.expand(storage.join(stage_run.tmp_dir, "heldout")))
        self._report = {
            "model": MODEL_FILE, "sha256": tok.sha256, "vocab_size": tok.vocab_size,
            "trained": not self.fixed_model, "taken_from": self.fixed_model,
            "model_type": settings.model_type, "sample_bytes": sample_bytes,
            "sample_bytes_by_language": {k: round(v) for k, v in self.rates.train_bytes.items()} if sample_bytes else {},
            "train_seconds": round(train_seconds, 1), "heldout_eval": evaluation,
        }
        from tokenizer.evaluate import eval_table

        _console().print(eval_table(evaluation, "tokenizer on held-out mix documents"))
        return stats

    def _train(self, stage_run: StageRun, settings: TrainSettings, stats: StageStats) -> tuple[bytes, int, float]:
        """SentencePiece on the joined sample parts: (model bytes, sample bytes, seconds)."""
        sample_parts = storage.expand(storage.join(stage_run.tmp_dir, "sample"))
        local = "://" not in stage_run.tmp_dir
        with tempfile.TemporaryDirectory(dir=stage_run.tmp_dir if local else None) as tmp:
            sample = os.path.join(tmp, "sample.txt")
            sample_bytes = concatenate(sample_parts, sample)
            if not sample_bytes:  # SentencePiece would only say INTERNAL [!sentences_.empty()]
                raise ConfigError(f"{self.cfg.path}: tokenizer: the training sample is empty: "
                                  f"{empty_sample_reason(stats, self.rates.limited_by)}")
            started = time.time()
            with _console().status(f"tokenizer: training SentencePiece {settings.model_type}, vocabulary "
                                   f"{settings.vocab_size:,}, on {sample_bytes / 1e6:,.1f} MB with "
                                   f"{settings.num_threads or os.cpu_count()} threads"):
                try:
                    model = train(settings, sample)
                except RuntimeError as e:  # e.g. vocab_size too small for the characters to cover
                    size = f"{sample_bytes / 1e6:,.1f} MB" if sample_bytes >= 1e6 else f"{sample_bytes:,} bytes"
                    raise ConfigError(f"{self.cfg.path}: tokenizer: SentencePiece cannot train with these "
                                      f"settings on this sample ({stats.kept.docs:,} documents, {size} of text): "
                                      f"{training_error_hint(str(e), settings)}") from None
        return model, sample_bytes, time.time() - started

    def report_data(self, stage_run: StageRun) -> dict:
        return self._report


VOCAB_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
VOCAB_TOO_LARGE = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
# Why documents of the mix are not in the training sample (the stage's drop reasons).
LEFT_OUT = {
    "tokenizer_heldout": "held out for the evaluation figures (tokenizer.heldout_bytes: up to half of each language)",
    "tokenizer_not_sampled": "not drawn (tokenizer.sample_bytes)",
    "tokenizer_mix_repeat": "repeats of the mix",
    "tokenizer_other_language": "in languages without a tokenizer.language_shares entry",
}


def empty_sample_reason(stats: StageStats, limited_by: str | None = None) -> str:
    """Where the mix's documents went, when none of them gave the training sample a line of text, and
    only the changes that could have given it one with these counts: a held-out share that held
    nothing out, or a sample size when no document was left undrawn, is no cause. `limited_by`: the
    language whose text set the sample's size (SampleRates), None when tokenizer.sample_bytes did."""
    if not stats.input.docs:
        return "the mix wrote no documents: the stages before it left none (their reports say where they went)."
    left = {reason: c for reason, c in sorted(stats.dropped.items()) if c.docs}
    where = [f"{stats.kept.docs:,} drawn but empty or whitespace only"] if stats.kept.docs else []
    where += [f"{c.docs:,} {LEFT_OUT.get(reason, reason)}" for reason, c in left.items()]
    fixes = []
    if stats.kept.docs:
        fixes.append(f"give the mix documents with text (the {stats.kept.docs:,} drawn have none)")
    if "tokenizer_not_sampled" in left:
        fixes.append(f"give the mix more {limited_by} text (the language shares draw the other languages "
                     f"down to match it)" if limited_by else "raise tokenizer.sample_bytes")
    if "tokenizer_heldout" in left:
        held = left["tokenizer_heldout"]
        fixes.append(f"lower tokenizer.heldout_bytes ({held.docs:,} documents, {held.bytes:,} bytes held out)")
    if not fixes:
        fixes.append("give the mix documents in the languages of tokenizer.language_shares")
    return (f"of the mix's {stats.input.docs:,} documents, {'; '.join(where)}. SentencePiece needs lines of text: "
            f"{', or '.join(fixes)}.")


def training_error_hint(message: str, settings: TrainSettings) -> str:
    """SentencePiece's message in the config's terms: the key to change and a value that would work."""
    found = VOCAB_TOO_LARGE.search(message)
    if found:
        most = int(found.group(2))
        # SentencePiece's own advice is a smaller vocabulary, which the config may not allow.
        smaller = (f", or set tokenizer.vocab_size to at most {most:,}" if most >= MIN_VOCAB_SIZE else
                   f"; tokenizer.vocab_size cannot go below {MIN_VOCAB_SIZE} (256 byte pieces + specials)")
        return (f"the sample is too small for tokenizer.vocab_size {found.group(1)}: SentencePiece finds only "
                f"{most:,} pieces in it. Train on more text (a larger mix, a larger tokenizer.sample_bytes if it "
                f"caps the sample, or a smaller tokenizer.heldout_bytes: up to half of each language is held "
                f"out){smaller}.")
    found = VOCAB_TOO_SMALL.search(message)
    if not found:
        return message
    required = int(found.group(2))
    enough = -(-(required + 256 + 64) // 1000) * 1000  # + byte and special pieces, rounded up to a thousand
    return (f"tokenizer.vocab_size is {found.group(1)}, but the sample has {required:,} characters that "
            f"tokenizer.character_coverage {settings.character_coverage} asks to cover. Set tokenizer.vocab_size "
            f"to at least {enough:,} (real bilingual crawls: 32,000 or more), or lower "
            f"tokenizer.character_coverage (down to 0.98) so that fewer characters need a piece of their own.")


class _TextSink:
    """A text interface over a binary stream, buffered (write_training_lines writes many small strings)."""

    def __init__(self, raw, buffer_chars: int = 1 << 20):
        self.raw, self.parts, self.size, self.limit = raw, [], 0, buffer_chars

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)
        if self.size >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.raw.write("".join(self.parts).encode())
            self.parts, self.size = [], 0


def _console():
    from rich.console import Console

    return Console(stderr=True)


def concatenate(parts: list[str], target: str) -> int:
    """Join the sample parts into the one local file SentencePiece reads; returns its bytes."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(storage.size(p) for p in parts)
    console = _console()
    with Progress(TextColumn("tokenizer: joining the sample"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress, open(target, "wb") as out:
        task = progress.add_task("join", total=total)
        for p in parts:
            with storage.open_input(p) as f:
                while chunk := f.read(1 << 22):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    return total


def vocab_text(tok) -> str:
    """piece<TAB>score per line, with newline and tab written as \\n and \\t so each piece stays one line."""
    escape = str.maketrans({"\n": "\\n", "\t": "\\t"})
    return "".join(f"{tok.piece(i).translate(escape)}\t{tok.sp.get_score(i):.6g}\n" for i in range(tok.vocab_size))


def evaluate_parquet(tok, paths: list[str], limit_docs: int | None = None) -> dict:
    from tokenizer.evaluate import evaluate

    def docs():
        n = 0
        for batch in iter_parquet_rows([p for p in paths if p.endswith(".parquet")], columns=["lang", "text"]):
            for lang, text in zip(batch.column("lang").to_pylist(), batch.column("text").to_pylist()):
                if limit_docs is not None and n >= limit_docs:
                    return
                n += 1
                yield lang, text or ""

    return evaluate(tok, docs())


# ---------------------------------------------------------------------------------------------
# Commands: `glmdata tokenizer train` (the stage) and `glmdata tokenizer eval`


def _train_arguments(p) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--force", action="store_true", help="re-run even if _SUCCESS matches")


@register_command("tokenizer", "train", "train the shared SentencePiece model on a balanced EN/ZH sample of the "
                  "mix (the tokenizer stage)", _train_arguments)
def train_command(args) -> int:
    from pipeline.cli import run_stage_command

    return run_stage_command(args)


def _eval_arguments(p) -> None:
    from pipeline.cli import at_least

    p.add_argument("--model", "-m", required=True, help="a SentencePiece .model (local, gs://, s3://), e.g. "
                   "<workdir>/tokenizer/tokenizer.model")
    p.add_argument("--data", "-d", required=True, nargs="+",
                   help="Parquet files/folders/globs (columns text, lang) or JSONL files ({text, lang} per line; "
                        ".jsonl, .jsonl.gz, .jsonl.zst, .json)")
    p.add_argument("--text-column", default="text", help="text field (default: text)")
    p.add_argument("--lang-column", default="lang", help="language field (default: lang)")
    p.add_argument("--lang", help="treat every document as this language (when the data has no language field)")
    p.add_argument("--limit", type=at_least(1), help="evaluate at most this many documents")
    p.add_argument("--json", help="also write the figures to this JSON file")


def iter_eval_docs(paths: list[str], text_column: str, lang_column: str, lang: str | None):
    """(lang, text) from Parquet or JSONL inputs, file by file."""
    import io

    from filters.blocklist import decompressed

    for pattern in paths:
        files = storage.expand(pattern)
        if not files:
            raise FileNotFoundError(f"--data {pattern}: matches no file")
        for path in files:
            if path.endswith(".parquet"):
                columns = [text_column] + ([lang_column] if lang is None else [])
                for batch in iter_parquet_rows([path], columns=columns):
                    langs = [lang] * batch.num_rows if lang else batch.column(lang_column).to_pylist()
                    yield from zip(langs, (t or "" for t in batch.column(text_column).to_pylist()))
            elif path.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json")):
                text = decompressed(path, storage.read_bytes(path)).decode("utf-8")
                for n, line in enumerate(io.StringIO(text), 1):
                    if line.strip():
                        try:
                            doc = json.loads(line)
                        except ValueError as e:
                            raise ValueError(f"{path}:{n}: not JSON ({e})") from None
                        if not isinstance(doc, dict) or text_column not in doc:
                            raise ValueError(f"{path}:{n}: no field {text_column!r} (see --text-column)")
                        yield lang or doc.get(lang_column), doc[text_column] or ""
            else:
                raise ValueError(f"{path}: not Parquet or JSON lines (expected .parquet, .jsonl, .jsonl.gz, "
                                 ".jsonl.zst or .json)")


def _load_model(path: str):
    """The SentencePiece model at `path`. sentencepiece's parse error names its own source line, not the file,
    and it loads an empty file as a model with no pieces."""
    from tokenizer.spm import load_proto

    try:
        tok = load_proto(storage.read_bytes(path))
    except RuntimeError:
        tok = None
    if tok is None or not tok.vocab_size:
        raise ValueError(f"{path}: not a SentencePiece model")
    return tok


@register_command("tokenizer", "eval", "bytes/token, tokens/word, tokens/char, byte fallback and round-trip "
                  "exactness per language, and the vocabulary's Han/Latin/other split", _eval_arguments)
def eval_command(args) -> int:
    import itertools

    from tokenizer.evaluate import eval_table, evaluate

    try:
        tok = _load_model(args.model)
        docs = iter_eval_docs(args.data, args.text_column, args.lang_column, args.lang)
        result = evaluate(tok, itertools.islice(docs, args.limit) if args.limit else docs)
        if not result["languages"]:
            raise ValueError(f"no document in --data {' '.join(args.data)}")
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        _console().print(f"[red]error:[/red] glmdata tokenizer eval: {e}")
        return 2
    from rich.console import Console

    Console().print(eval_table(result, args.model))
    if args.json:
        storage.write_text(args.json, json.dumps(result, indent=2, sort_keys=True))
    inexact = sum(f["inexact_docs"] for f in result["languages"].values())
    if inexact:
        _console().print(f"[red]{inexact} documents did not round-trip exactly[/red]")
    return 1 if inexact else 0
