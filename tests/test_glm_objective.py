"""GLM blank infilling (pipeline/glm_objective.py): structure, exact reconstruction, and the
distributions DESIGN.md asks for, on random streams (hypothesis) and real encoded documents."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.glm_objective import GLMObjective, build_sequences
from test_shards_data import real_documents, reconstruct_samples
from tokenizer.special_tokens import EOS, MASK, NUM_SPECIAL, SOP
from trainer.shard_format import verify_sequence


LANGS = 7


def stream_of(doc_lengths: list[int], seed: int, vocab: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.append(rng.integers(NUM_SPECIAL, vocab, n), EOS) for n in doc_lengths]).astype(np.int32)


def build(obj: GLMObjective, stream: np.ndarray, seed: int, n_sequences: int | None = None):
    n_sequences = n_sequences or math.ceil(len(stream) / (0.7 * obj.seq_len)) + 1
    plan = obj.plan(np.random.default_rng([seed, 0]), n_sequences)
    tokens = stream[:plan.total_tokens()]
    langs = (tokens % LANGS).astype(np.int8)  # a language per token that the checks can recompute
    cols, kinds, build_stats = build_sequences(plan, tokens, langs, np.random.default_rng([seed, 1]))
    rows = [{**{c: v[i] for c, v in cols.items()}, "kind": kinds[i]} for i in range(len(kinds))]
    return plan, tokens, rows, build_stats


def check_structure(rows: list[dict], tokens: np.ndarray, build_stats) -> None:
    """Every invariant holds, the samples give back the stream exactly, and only the last sequence
    has padding (unless spans found no room in tiny documents, each costing 2 slots)."""
    for i, row in enumerate(rows):
        assert verify_sequence(row) == [], (i, verify_sequence(row))
        real, tok = row["segment_ids"] != 0, row["tokens"]
        text = real & ((tok >= NUM_SPECIAL) | (tok == EOS))
        assert np.array_equal(row["langs"][text], tok[text] % LANGS)  # each token keeps its document's language
        sop = tok == SOP
        assert np.array_equal(row["langs"][sop], row["targets"][sop] % LANGS)  # <sop>: the span it starts
    rebuilt = [s for row in rows for s in reconstruct_samples(row)]
    assert np.array_equal(np.concatenate(rebuilt), tokens)
    padding_before_last = sum(int((row["segment_ids"] == 0).sum()) for row in rows[:-1])
    assert padding_before_last <= 2 * build_stats.dropped_spans


@settings(max_examples=60, deadline=None)
@given(doc_lengths=st.lists(st.integers(1, 150), min_size=1, max_size=40),
       shape=st.sampled_from([(64, 16), (96, 32), (128, 64), (256, 64)]),
       mask_share=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_random_streams_reconstruct_exactly(doc_lengths, shape, mask_share, seed):
    obj = GLMObjective(seq_len=shape[0], mask_sample_len=shape[1], mask_share=mask_share)
    stream = stream_of(doc_lengths, seed)
    plan, tokens, rows, build_stats = build(obj, stream, seed)
    check_structure(rows, tokens, build_stats)
    if len(stream) >= plan.total_tokens():  # the plan's length is exactly what its sequences consume
        assert all((row["segment_ids"] != 0).sum() > 0 for row in rows)
        assert build_stats.sequences == len(plan.is_mask)


def test_stream_of_one_token_documents_never_crosses_eos():
    obj = GLMObjective(seq_len=128, mask_sample_len=32, mask_share=1.0)
    plan, tokens, rows, build_stats = build(obj, stream_of([1] * 400, 7), 7)
    check_structure(rows, tokens, build_stats)
    assert build_stats.masked_tokens > 0 and build_stats.shortened_spans > 0


def test_same_seed_same_sequences_other_seed_differs():
    obj = GLMObjective(seq_len=256, mask_sample_len=64)
    stream = stream_of([300] * 30, 1)
    a, b, c = (build(obj, stream, seed)[2] for seed in (5, 5, 6))
    assert all(np.array_equal(x["tokens"], y["tokens"]) and x["kind"] == y["kind"] for x, y in zip(a, b))
    assert not all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, c))


def truncated_poisson_chi_square(hist: np.ndarray, lam: float = 3.0, lo: int = 1, hi: int = 39) -> float:
    """p-value of span lengths `hist[L]` against Poisson(lam) restricted to lo..hi (tail >= 8 pooled)."""
    k = np.arange(lo, hi + 1)
    pmf = stats.poisson.pmf(k, lam)
    pmf /= pmf.sum()
    observed = hist[lo:hi + 1].astype(float)
    pool = 8 - lo
    observed = np.append(observed[:pool], observed[pool:].sum())
    expected = np.append(pmf[:pool], pmf[pool:].sum()) * observed.sum()
    return stats.chisquare(observed, expected).pvalue


def check_distributions(rows: list[dict], build_stats, obj: GLMObjective) -> None:
    kinds = [r["kind"] for r in rows]
    n_mask = kinds.count("MASK")
    assert stats.binomtest(n_mask, len(kinds), obj.mask_share).pvalue > 1e-3, n_mask / len(kinds)
    ratio = build_stats.masked_tokens / build_stats.mask_sample_tokens
    assert 0.145 < ratio < 0.17, ratio  # 15%, plus the overshoot of each 512-token sample's last span
    assert truncated_poisson_chi_square(build_stats.span_length_hist) > 1e-3, build_stats.span_length_hist
    gen = [int((r["targets"] != -100).sum()) / (int((r["segment_ids"] != 0).sum()) - 1)
           for r in rows[:-1] if r["kind"] == "gMASK"]
    width = obj.gmask_max_ratio - obj.gmask_min_ratio
    assert stats.kstest(gen, "uniform", args=(obj.gmask_min_ratio, width)).pvalue > 1e-3


def test_distributions_on_long_documents():
    obj = GLMObjective()  # GLM-130B: 2048-token sequences, 4 x 512 [MASK] samples
    stream = stream_of([8000] * 400, 11)
    _, tokens, rows, build_stats = build(obj, stream, 11)
    assert len(rows) > 1000
    check_distributions(rows, build_stats, obj)
    assert build_stats.shortened_spans == build_stats.dropped_spans == 0


def test_real_documents(shared_data):
    docs = real_documents(shared_data)
    stream = np.concatenate([np.append(np.asarray(d["tokens"], np.int32), EOS) for d in docs if d["tokens"]])
    obj = GLMObjective(seq_len=1024, mask_sample_len=512)  # 512: the [MASK] sample of GLM-130B
    _, tokens, rows, build_stats = build(obj, stream, 3)
    check_structure(rows, tokens, build_stats)
    assert len(rows) > 100
    check_distributions(rows, build_stats, obj)


def test_plan_covers_fifteen_percent_of_each_sample():
    obj = GLMObjective(seq_len=2048, mask_sample_len=512, mask_share=1.0)
    plan = obj.plan(np.random.default_rng(0), 500)
    at = np.concatenate([[0], np.cumsum(plan.span_counts)])
    covered = np.add.reduceat(plan.span_lengths, at[:-1]) / plan.sample_tokens()
    assert covered.min() >= 0.15 and abs(covered.mean() - 0.16) < 0.01
    assert plan.span_lengths.min() >= 1 and plan.span_lengths.max() <= 39


def test_span_lengths_do_not_depend_on_their_place_in_the_sample():
    """Spans are drawn until they cover the mask ratio, so the one that crosses it is longer on average
    (size-biased); kept in draw order it would always be each sample's last, rightmost span (0.76-0.77
    tokens longer than the first on average, seeds 0-4, 20,000 samples each)."""
    obj = GLMObjective(seq_len=2048, mask_sample_len=512, mask_share=1.0)
    plan = obj.plan(np.random.default_rng(0), 5000)
    last = np.cumsum(plan.span_counts) - 1
    first = last - plan.span_counts + 1
    # one span of each sample on each side; the difference's standard error is ~0.02 here
    assert abs(plan.span_lengths[last].mean() - plan.span_lengths[first].mean()) < 0.1


def test_verify_sequence_catches_broken_samples():
    obj = GLMObjective(seq_len=128, mask_sample_len=32)
    _, _, rows, _ = build(obj, stream_of([500] * 4, 2), 2)
    mask_row = next(r for r in rows if r["kind"] == "MASK")
    gmask_row = next(r for r in rows if r["kind"] == "gMASK")

    def broken(row, column, edit):
        row = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
        edit(row[column], row)
        return verify_sequence(row)

    first_b = int(np.argmin(mask_row["prefix"]))
    assert broken(mask_row, "targets", lambda t, r: t.__setitem__(0, 42))  # loss in Part A
    assert broken(mask_row, "targets", lambda t, r: t.__setitem__(first_b, t[first_b] + 1))  # wrong span target
    assert broken(mask_row, "position_ids", lambda p, r: p.__setitem__(first_b, p[first_b] + 1))  # wrong position
    assert broken(mask_row, "prefix", lambda p, r: p.__setitem__(first_b, 1))  # Part B token marked Part A
    assert broken(mask_row, "segment_ids", lambda s, r: s.__setitem__(0, 3))  # segments out of order
    assert broken(mask_row, "tokens", lambda t, r: t.__setitem__(int(np.argmax(t == MASK)) + 1, MASK))
    last = int(np.count_nonzero(gmask_row["segment_ids"])) - 1
    assert broken(gmask_row, "position_ids", lambda p, r: p.__setitem__(last, 0))  # positions stop counting
    assert broken(gmask_row, "kind", lambda k, r: r.__setitem__("kind", "MASK"))


def test_span_arrangements_are_uniform():
    """Stars and bars: every set of slots equally likely, in roomy and in crowded documents."""
    from itertools import combinations

    from pipeline.glm_objective import _sorted_distinct_draws

    rng = np.random.default_rng(0)
    for size, count in ((7, 2), (6, 4), (6, 5)):  # sparse (vectorized rejection), then crowded (one by one)
        groups = 4000
        draws = _sorted_distinct_draws(rng, np.full(groups, size), np.full(groups, count)).reshape(groups, count)
        assert (np.diff(draws, axis=1) > 0).all() and draws.min() >= 0 and draws.max() < size
        index = {c: i for i, c in enumerate(combinations(range(size), count))}
        seen = np.bincount([index[tuple(d)] for d in draws.tolist()], minlength=len(index))
        assert stats.chisquare(seen).pvalue > 1e-3, seen


@pytest.mark.parametrize("bad", [dict(seq_len=100, mask_sample_len=32), dict(mask_ratio=0.0),
                                 dict(mask_share=1.5), dict(gmask_min_ratio=0.0), dict(span_max=0)])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        GLMObjective(**bad)
