"""`glmdata pii`: personal identifiers replaced by placeholders; pages that are mostly identifiers dropped.

A map stage between quality and dedup (filters/pii.py finds and confirms the identifiers). Kept
documents carry one `q_pii_<kind>` count column per kind; stats.json sums them under
`extra.pii_<kind>`. A document whose identifiers cover more than `max_pii_char_frac` of its
characters, with at least `min_pii_for_drop` of them (a contact list, a directory of phone numbers),
is dropped as `pii:mostly_pii`.

Why before dedup: pages made from one template that differ only in the phone number, QQ id or email
printed on them (classified ads, shop fronts, spam) become the same text once those are placeholders,
so dedup merges them, and every copy that dedup compares is already clean. The cost is small (about
35 MB/s per core, bench/pii.py) next to language ID and quality. Quality's copy of the text before its
line rules (`q_text_before_rewrite`, what dedup hashes) is anonymized the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from filters.pii import KINDS, PIIAnonymizer
from pipeline.config import register_section
from pipeline.registry import register_stage
from pipeline.schema import TEXT_BEFORE_REWRITE
from pipeline.stage import BatchResult, MapStage
from pipeline.stages.readers import ReadsWhatMixUses

MOSTLY_PII = "pii:mostly_pii"


@register_section("pii")
@dataclass
class PiiSection:
    # Kinds to replace (filters/pii.py): email, ip, cn_id, hk_id, tw_id, bank_card, phone, qq, wechat,
    # url_token. An empty list keeps every identifier (the stage then only counts nothing and copies).
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    # "tag": <EMAIL>, <PHONE>, ... ; "dummy": FineWeb-style values that belong to nobody
    # (email@example.com, 192.0.2.1, ...).
    mode: str = "tag"
    replacements: dict[str, str] = field(default_factory=dict)  # kind -> text, overrides the mode's
    # Drop a document whose identifiers cover more than this share of its characters ... (of the 2,837
    # documents of ../shared/data/text and the ChineseWebText sample, one news page passes 0.3: a
    # contact block of phone, fax and email; a list of phone numbers with names covers ~0.7)
    max_pii_char_frac: float = 0.3
    # ... when it has at least this many of them (one email in a two-line note is not a directory).
    min_pii_for_drop: int = 5

    def __post_init__(self):
        PIIAnonymizer(tuple(self.kinds), self.mode, self.replacements)  # raises on a bad kind, mode or replacement
        if not 0.0 < self.max_pii_char_frac <= 1.0:
            raise ValueError(f"max_pii_char_frac: expected a share in (0, 1], got {self.max_pii_char_frac}")
        if self.min_pii_for_drop < 1:
            raise ValueError(f"min_pii_for_drop: expected at least 1, got {self.min_pii_for_drop}")


def count_columns() -> list[str]:
    return [f"q_pii_{kind}" for kind in KINDS]


@register_stage
class PiiStage(ReadsWhatMixUses, MapStage):
    name = "pii"
    upstream = "quality"
    # 2: mapped IPv6, version words, scope names, grouped cards, non-ASCII emails; 3: cards written one
    # after another in a run of 4-digit groups
    output_version = 3
    batch_size = 1024

    @cached_property
    def anonymizer(self) -> PIIAnonymizer:
        s: PiiSection = self.section
        return PIIAnonymizer(tuple(s.kinds), s.mode, s.replacements)

    def process_batch(self, batch: pa.RecordBatch) -> BatchResult:
        s: PiiSection = self.section
        texts = batch.column("text").to_pylist()
        counts = np.zeros((len(KINDS), len(texts)), np.int32)
        out_texts, reasons, details = [], [], []
        for i, text in enumerate(texts):
            cleaned, matches = self.anonymizer.anonymize(text) if text else (text, [])
            covered = sum(m.end - m.start for m in matches)
            for m in matches:
                counts[KINDS.index(m.kind), i] += 1
            if len(matches) >= s.min_pii_for_drop and covered > s.max_pii_char_frac * len(text):
                reasons.append(MOSTLY_PII)
                details.append(f"{len(matches)} identifiers, {covered / len(text):.2f} of the characters")
                out_texts.append(text)  # rejected rows keep the original, as every stage's do
            else:
                reasons.append(None)
                details.append(None)
                out_texts.append(cleaned)
        table = pa.Table.from_batches([batch])
        table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(out_texts, pa.string()))
        if TEXT_BEFORE_REWRITE in table.column_names:
            before = [None if t is None else self.anonymizer.anonymize(t)[0]
                      for t in table.column(TEXT_BEFORE_REWRITE).to_pylist()]
            table = table.set_column(table.schema.get_field_index(TEXT_BEFORE_REWRITE), TEXT_BEFORE_REWRITE,
                                     pa.array(before, pa.string()))
        for name, column in zip(count_columns(), counts):
            if name in table.column_names:  # re-running on a pii output: the new counts win
                table = table.drop_columns([name])
            table = table.append_column(pa.field(name, pa.int32()), pa.array(column, pa.int32()))
        kept = np.array([r is None for r in reasons])
        extra = {f"pii_{kind}": float(counts[k][kept].sum()) for k, kind in enumerate(KINDS)}
        extra["pii_documents_changed"] = float(((counts.sum(axis=0) > 0) & kept).sum())
        return BatchResult(table, reasons, details, extra=extra)
