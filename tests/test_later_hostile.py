"""Hostile documents in the stages after the mix (tokenizer training, encode, shards, report): one
document of megabytes with no space or of characters that fall back to bytes must cost time linear in
its size. Each timed case took seconds on the code before its fix; the bound is generous so that a
slow CI machine does not fail it."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline import doc_profile
from pipeline.report import collect
from pipeline.report_html import render_page
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.shards import row_group_stream
from tokenizer.special_tokens import EOS, NUM_SPECIAL
from tokenizer.train import split_long_line

from report_fixtures import make_run, write_stage
from test_redos import BOUND_S, seconds

FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467"  # an emoji ZWJ sequence, 18 UTF-8 bytes


def test_a_long_training_line_is_cut_in_linear_time():
    line = FAMILY * (8_000_000 // len(FAMILY.encode()))  # 8 MB, no break character: 3.5 s before
    assert seconds(split_long_line, line, 8192) < BOUND_S
    pieces = split_long_line(line, 8192)
    assert "".join(pieces) == line and max(len(p.encode()) for p in pieces) <= 8192


def test_a_shard_copies_only_the_documents_of_its_range():
    """A row group whose first document is a million tokens (a page of emoji, all byte pieces): a shard that
    takes 500 tokens of the small documents after it copies about those, not the whole row group
    (every shard that touches the row group paid for all of it: 1.6 s -> 0.3 s a shard in a run of
    4 MB documents), and gets the same tokens and labels as a slice of the whole stream."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(NUM_SPECIAL, 1000, 1_000_000)] + [rng.integers(NUM_SPECIAL, 1000, 10) for _ in range(999)]
    docs[5] = np.array([EOS])  # an invalid document in the range: no stream tokens
    table = pa.table({"tokens": pa.array([d.tolist() for d in docs], pa.list_(pa.int32())),
                      "lang": ["zh"] + ["en"] * 999, "source": ["web"] * 1000})
    whole = row_group_stream(table, 1000, ["en", "zh"], ["web"])
    lo, hi = 1_000_001 + 33, 1_000_001 + 533
    piece = row_group_stream(table, 1000, ["en", "zh"], ["web"], lo, hi)
    for got, expected in ((piece.tokens, whole.tokens), (piece.langs, whole.langs), (piece.sources, whole.sources)):
        assert np.array_equal(got, expected[lo:hi])
    assert piece.tokens.base is None or piece.tokens.base.size < 600
    assert len(row_group_stream(table, 1000, ["en", "zh"], ["web"], len(whole.tokens), len(whole.tokens) + 9).tokens) == 0


def test_the_report_cuts_a_samples_long_url_and_id(tmp_path):
    """Samples of documents with a 1 MB URL and id: 12 MB of page and of report.json before, for six documents."""
    workdir = make_run(tmp_path / "work")
    long_url, long_id = "http://e.com/" + "a%3C" * 250_000, "e" + "i" * 1_000_000
    rows = [({"id": f"{long_id}{i}", "text": "x y z", "url": long_url, "source": "web", "source_file": "f",
              "source_offset": i, "lang": f"l{i}", "lang_score": 0.5}, "reason" if i % 2 else None, "detail")
            for i in range(6)]
    write_stage(workdir, "quality", [rows], DOC_SCHEMA)
    assert (workdir / "quality" / "stats.json").stat().st_size < 100_000  # the samples are recorded cut
    data = collect(str(workdir))
    shown = [row for per_lang in data["samples"]["quality"].values() for docs in per_lang.values() for row in docs]
    mark = "… (1,000,013 characters)"
    assert len(shown) == 6 and all(row["url"] == long_url[:300 - len(mark)] + mark for row in shown)
    assert len(render_page(data)) < 500_000


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
