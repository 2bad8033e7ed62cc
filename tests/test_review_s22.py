"""Edge cases found reviewing session 22's commits."""
from __future__ import annotations

import pyarrow as pa

from pipeline import doc_profile


def test_samples_whose_ids_are_alike_once_cut_stay_distinct():
    """Ids cut when recorded (`shown_names`) can be alike for distinct documents (a 400-character stem,
    then the number): one sample a group instead of three when `_bottom` kept one entry per cut id.
    A document repeated (the mix) is still one sample."""
    ids = ["doc/" + "p" * 400 + f"/{i}" for i in range(6)]
    table = pa.table({"id": ids + ids[:1], "text": ["x y z"] * 7, "source": ["web"] * 7, "lang": ["en"] * 7})
    profile = doc_profile.empty_profile()
    doc_profile.record(profile, table, doc_profile.KEPT, "quality")
    other = doc_profile.empty_profile()
    doc_profile.record(other, table.slice(3), doc_profile.KEPT, "quality")
    doc_profile.merge(profile, other)
    samples = profile["samples"][doc_profile.KEPT]["en"]
    assert len(samples) == doc_profile.SAMPLES_PER_GROUP == len({key for key, _ in samples})
    assert all(len(row["id"]) == doc_profile.NAME_CHARS for _, row in samples)
