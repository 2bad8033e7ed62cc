"""GLM blank infilling (GLM-130B, arXiv 2210.02414; THUDM/GLM), pure numpy.

A shard is built from a contiguous slice of the token stream (every document followed by <eos>) in
two steps, each with its own random stream:

1. `GLMObjective.plan(rng, n)`: the corruption of n sequences, drawn without looking at any token:
   each sequence is [MASK] (probability `mask_share`, 0.3) or [gMASK] -- drawn per sequence, so
   0.3 is also the share of tokens, as GLM-130B's "[MASK] for 30% of training tokens" (a draw per
   512-token sample would leave [MASK] under 10% of the tokens); a [MASK] sequence packs
   `seq_len // mask_sample_len` samples, each with span lengths from Poisson(3) restricted to 1..39
   drawn until they cover 15% of the sample's own tokens; a [gMASK] sequence gets the fraction of
   it to generate, uniform in [0.2, 1.0]. Every sample then consumes a known number of stream
   tokens (mask_sample_len - 2 * spans, or seq_len - 1), so the stream offset where each shard
   starts is a prefix sum of plan totals: shards are built in parallel, and every sequence is full
   except the very last one (and but for 2 slots per span that found no room at all, which takes
   windows of one- or two-token documents).
2. `build_sequences(...)`: places the spans in the actual tokens (never across an <eos>, at least
   one kept token between spans) and writes the packed sequences.

Layout of one sample (targets[i] is what position i predicts; -100: no loss):
    [MASK]   Part A: the text with each span replaced by one [MASK]; positions 0..nA-1
             Part B: the spans in shuffled order, each `<sop> span`, targets `span <eop>`, every
                     token at its [MASK]'s position (1-D positions, as GLM-130B)
    [gMASK]  Part A: `prefix [gMASK]`; Part B: `<sop> suffix[:-1]`, targets `suffix`;
             positions keep counting after [gMASK]
Samples of one sequence get segment ids 1, 2, ...: the trainer's attention lets token i see token
j only within one segment and when j is in Part A or j <= i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tokenizer.special_tokens import EOP, EOS, GMASK, MASK, PAD, SOP
from trainer.shard_format import COLUMN_DTYPES, IGNORE, SEQ_COLUMNS


@dataclass(frozen=True)
class GLMObjective:
    """Blank-infilling settings; defaults are GLM-130B's (paper section 2.1 and its config)."""

    seq_len: int = 2048  # tokens per packed sequence (GLM-130B: 2048)
    mask_sample_len: int = 512  # a [MASK] sample; seq_len // this samples per sequence (GLM-130B: 4 x 512)
    mask_share: float = 0.3  # share of sequences corrupted with [MASK]; the rest [gMASK] (GLM-130B: 30/70)
    mask_ratio: float = 0.15  # share of a [MASK] sample's tokens inside spans (GLM-130B: 15%)
    span_lambda: float = 3.0  # Poisson mean of [MASK] span lengths (GLM-130B: 3)
    span_min: int = 1
    span_max: int = 39  # Poisson(3) restricted to 1..39 (GLM-130B's block length table)
    gmask_min_ratio: float = 0.2  # generated share of a [gMASK] sample, uniform in [min, max]
    gmask_max_ratio: float = 1.0  # (GLM-130B min_gmask_ratio 0.2)

    def __post_init__(self):
        if self.mask_sample_len < 8 or self.seq_len % self.mask_sample_len:
            raise ValueError(f"seq_len ({self.seq_len}) must be a multiple of mask_sample_len "
                             f"({self.mask_sample_len}), which must be at least 8")
        if not 0.0 <= self.mask_share <= 1.0:
            raise ValueError(f"mask_share must be in [0, 1], got {self.mask_share}")
        if not 0.0 < self.mask_ratio < 0.5:
            raise ValueError(f"mask_ratio must be in (0, 0.5), got {self.mask_ratio}")
        if not 1 <= self.span_min <= self.span_max or self.span_lambda <= 0:
            raise ValueError("need 1 <= span_min <= span_max and span_lambda > 0")
        if not 0.0 < self.gmask_min_ratio <= self.gmask_max_ratio <= 1.0:
            raise ValueError("need 0 < gmask_min_ratio <= gmask_max_ratio <= 1")

    @property
    def samples_per_mask_sequence(self) -> int:
        return self.seq_len // self.mask_sample_len

    def plan(self, rng: np.random.Generator, n_sequences: int) -> "ShardPlan":
        """The corruption of `n_sequences`, independent of the tokens they will hold."""
        is_mask = rng.random(n_sequences) < self.mask_share
        gmask_fraction = rng.uniform(self.gmask_min_ratio, self.gmask_max_ratio, n_sequences)
        span_lengths, span_counts = self._draw_spans(rng, int(is_mask.sum()) * self.samples_per_mask_sequence)
        return ShardPlan(self, is_mask, gmask_fraction, span_lengths, span_counts)

    def _draw_spans(self, rng: np.random.Generator, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Span lengths for `n_samples` [MASK] samples: truncated Poisson draws (out-of-range draws
        are discarded) until spans cover mask_ratio of the sample's tokens, which are
        mask_sample_len - 2 * spans (each span adds a [MASK] to Part A and a <sop> to Part B)."""
        r, t = self.mask_ratio, self.mask_sample_len
        most_spans = math.ceil(r * t / (self.span_min + 2 * r)) + 1
        width = 2 * most_spans + 16
        draws = np.empty((n_samples, 0), dtype=np.int64)
        while True:
            draws = np.hstack([draws, rng.poisson(self.span_lambda, (n_samples, width))])
            valid = (draws >= self.span_min) & (draws <= self.span_max)
            order = np.argsort(~valid, axis=1, kind="stable")  # valid draws first, in draw order
            lengths = np.take_along_axis(draws, order, axis=1)
            k = np.arange(1, lengths.shape[1] + 1)
            covered = (np.cumsum(lengths, axis=1) + 2 * r * k >= r * t) & (k <= valid.sum(axis=1, keepdims=True))
            if covered.any(axis=1).all():
                break
        counts = covered.argmax(axis=1) + 1
        chosen = np.arange(lengths.shape[1]) < counts[:, None]
        # Each sample's spans in random order, as GLM shuffles them before placing: in draw order the
        # span that crosses the mask ratio (longer on average) would always be the last one.
        keys = np.where(chosen, rng.random(lengths.shape), 2.0)
        lengths = np.take_along_axis(lengths, np.argsort(keys, axis=1, kind="stable"), axis=1)
        return lengths[chosen].astype(np.int32), counts.astype(np.int32)


@dataclass
class ShardPlan:
    objective: GLMObjective
    is_mask: np.ndarray  # [n_sequences] bool
    gmask_fraction: np.ndarray  # [n_sequences] generated share of each [gMASK] sequence
    span_lengths: np.ndarray  # lengths of all [MASK] samples' spans, sample after sample
    span_counts: np.ndarray  # [n_mask_sequences * samples_per_mask_sequence]

    def sample_tokens(self) -> np.ndarray:
        """Stream tokens each [MASK] sample consumes."""
        return self.objective.mask_sample_len - 2 * self.span_counts.astype(np.int64)

    def sequence_tokens(self) -> np.ndarray:
        """Stream tokens each sequence consumes."""
        per = np.full(len(self.is_mask), self.objective.seq_len - 1, dtype=np.int64)
        per[self.is_mask] = self.sample_tokens().reshape(-1, self.objective.samples_per_mask_sequence).sum(axis=1)
        return per

    def total_tokens(self) -> int:
        return int(self.sequence_tokens().sum())


@dataclass
class BuildStats:
    """What a shard holds, for the manifest and the report."""

    sequences: int = 0
    mask_sequences: int = 0
    mask_samples: int = 0
    gmask_samples: int = 0
    masked_tokens: int = 0  # document tokens inside [MASK] spans
    mask_sample_tokens: int = 0  # document tokens of [MASK] samples
    dropped_spans: int = 0  # spans that fit nowhere (tiny documents; the sample is that much shorter)
    shortened_spans: int = 0  # spans cut to fit a short document
    span_length_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gmask_ratio_hist: np.ndarray = field(default_factory=lambda: np.zeros(10, dtype=np.int64))  # deciles

    @classmethod
    def empty(cls, obj: GLMObjective) -> "BuildStats":
        return cls(span_length_hist=np.zeros(obj.span_max + 1, dtype=np.int64))

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def merge(self, other: dict) -> None:
        """Add the counts of another shard (as `to_dict` gave them)."""
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + (np.asarray(v, dtype=np.int64) if isinstance(v, list) else v))


PAD_VALUES = {"tokens": PAD, "targets": IGNORE, "position_ids": 0, "segment_ids": 0, "prefix": 0, "langs": -1}


def empty_columns(n_rows: int, seq_len: int) -> dict[str, np.ndarray]:
    return {c: np.full((n_rows, seq_len), PAD_VALUES[c], dtype=COLUMN_DTYPES[c]) for c in SEQ_COLUMNS}


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """concatenate([arange(s, s + n) for s, n in zip(starts, lengths)]), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths) \
        + np.arange(int(lengths.sum()), dtype=np.int64)


def _first_of_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first element of each run of equal keys, run number of every element)."""
    starts_run = np.concatenate([[True], keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=bool)
    return np.flatnonzero(starts_run), np.cumsum(starts_run) - 1


@dataclass
class _Samples:
    """Every sample of a shard that the stream reaches: its output row and stream window."""

    row: np.ndarray  # output row of each sample
    is_mask: np.ndarray
    start: np.ndarray  # first stream token of its window
    n: np.ndarray  # window length (the plan's, cut at the end of the stream)


def build_sequences(plan: ShardPlan, tokens: np.ndarray, langs: np.ndarray, rng: np.random.Generator
                    ) -> tuple[dict[str, np.ndarray], list[str], BuildStats]:
    """Pack the stream slice `tokens` (documents each followed by <eos>; `langs` per token) into the
    plan's sequences. The slice holds plan.total_tokens() tokens, or fewer at the end of the
    corpus, where the last sequence is partial and the plan's remaining sequences are left out.
    `rng` places spans and shuffles Part B.

    Only span placement looks at each [MASK] sample in Python (it depends on where documents end);
    everything else is computed for all samples of the shard at once."""
    obj = plan.objective
    tokens = np.asarray(tokens, dtype=np.int32)
    langs = np.asarray(langs, dtype=np.int8)
    stats = BuildStats.empty(obj)
    per_row = np.where(plan.is_mask, obj.samples_per_mask_sequence, 1)
    want = np.full(int(per_row.sum()), obj.seq_len - 1, dtype=np.int64)
    sample_is_mask = np.repeat(plan.is_mask, per_row)
    want[sample_is_mask] = plan.sample_tokens()
    start = np.cumsum(want) - want
    present = start < len(tokens)
    smp = _Samples(np.repeat(np.arange(len(plan.is_mask)), per_row)[present], sample_is_mask[present],
                   start[present], np.minimum(want, len(tokens) - start)[present])
    n_rows = int(smp.row[-1]) + 1 if len(smp.row) else 0
    out = {c: v.reshape(-1) for c, v in empty_columns(n_rows, obj.seq_len).items()}

    span_sample, span_start, span_len = _place_all_spans(plan, smp, tokens, rng, stats)
    length = smp.n + np.where(smp.is_mask, 2 * np.bincount(span_sample, minlength=len(smp.n)), 1)
    first, run = _first_of_runs(smp.row)
    before = np.cumsum(length) - length
    offset = before - before[first][run]
    segment = np.arange(len(smp.row)) - first[run] + 1
    segments = out["segment_ids"].reshape(n_rows, obj.seq_len)
    for r, o, ln, sg in zip(smp.row.tolist(), offset.tolist(), length.tolist(), segment.tolist()):
        segments[r, o:o + ln] = sg

    _write_mask_samples(out, smp, smp.row * obj.seq_len + offset, span_sample, span_start, span_len, tokens, langs, rng)
    gen, n = _write_gmask_samples({c: v.reshape(n_rows, obj.seq_len) for c, v in out.items()}, smp,
                                  plan.gmask_fraction[smp.row[~smp.is_mask]], tokens, langs)

    stats.sequences = n_rows
    stats.mask_sequences = int(plan.is_mask[:n_rows].sum())
    stats.mask_samples = int(smp.is_mask.sum())
    stats.gmask_samples = len(gen)
    stats.mask_sample_tokens = int(smp.n[smp.is_mask].sum())
    stats.masked_tokens = int(span_len.sum())
    stats.span_length_hist += np.bincount(span_len, minlength=obj.span_max + 1)
    stats.gmask_ratio_hist += np.bincount(np.minimum(9, (10 * gen) // n), minlength=10)
    columns = {c: v.reshape(n_rows, obj.seq_len) for c, v in out.items()}
    return columns, ["MASK" if m else "gMASK" for m in plan.is_mask[:n_rows].tolist()], stats


def _place_all_spans(plan: ShardPlan, smp: _Samples, tokens: np.ndarray, rng: np.random.Generator,
                     stats: BuildStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample, stream start, length) of every placed span, in stream order.

    Spans never cross an <eos> and keep at least one token between each other. Each span goes to a
    document piece of its window with room for it, chosen with probability proportional to the
    room (a window inside one document needs no choice); a span longer than any room left is
    shortened, and dropped if no room is left (tiny documents only). Inside a piece the arrangement
    is uniform (stars and bars, as GLM's sample_spans), drawn for all pieces of the shard at once."""
    spans_at = np.concatenate([[0], np.cumsum(plan.span_counts)]).tolist()
    eos = np.flatnonzero(tokens == EOS)
    mask_ids = np.flatnonzero(smp.is_mask)
    starts, ends = smp.start[mask_ids], smp.start[mask_ids] + smp.n[mask_ids]
    lo_eos, hi_eos = np.searchsorted(eos, starts).tolist(), np.searchsorted(eos, ends).tolist()
    span_lengths = plan.span_lengths.tolist()
    uniforms = rng.random(len(span_lengths)).tolist()
    piece_sample, piece_lo, piece_room, piece_count, piece_spans = [], [], [], [], []
    for m, (j, c, e) in enumerate(zip(mask_ids.tolist(), starts.tolist(), ends.tolist())):
        wanted = span_lengths[spans_at[m]:spans_at[m + 1]]
        bounds = [c, *(x + 1 for x in eos[lo_eos[m]:hi_eos[m]].tolist())]
        if len(bounds) == 1 and sum(wanted) + len(wanted) <= e - c + 1:
            pieces = [(c, e - c, wanted)]  # one document fills the window: nothing to choose
        else:
            highs = [b - 1 for b in bounds[1:]] + [e]
            assigned = _assign_to_pieces(wanted, [h - b + 1 for b, h in zip(bounds, highs)],
                                         uniforms[spans_at[m]:spans_at[m + 1]], stats)
            pieces = [(b, h - b, a) for b, h, a in zip(bounds, highs, assigned) if a]
        for lo, d, spans in pieces:
            piece_sample.append(j)
            piece_lo.append(lo)
            piece_room.append(d)
            piece_count.append(len(spans))
            piece_spans += spans
    count = np.asarray(piece_count, dtype=np.int64)
    lengths = np.asarray(piece_spans, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    first = np.cumsum(count) - count
    span_piece = np.repeat(np.arange(len(count)), count)
    free = np.asarray(piece_room, dtype=np.int64) - np.add.reduceat(lengths, first) - (count - 1) \
        if len(count) else count
    slots = _sorted_distinct_draws(rng, free + count, count)
    span_start = np.asarray(piece_lo, dtype=np.int64)[span_piece] + slots + before - before[first][span_piece]
    span_sample = np.asarray(piece_sample, dtype=np.int64)[span_piece]
    order = np.argsort(span_start, kind="stable")
    return span_sample[order], span_start[order], lengths[order]


def _sorted_distinct_draws(rng: np.random.Generator, sizes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each group i, counts[i] distinct integers drawn uniformly from range(sizes[i]), sorted,
    all groups concatenated. Sparse groups (fewer than one expected repeat) by vectorized
    rejection, redrawing a group that drew a repeat, which keeps every subset equally likely;
    crowded groups (short documents) one by one."""
    group = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    out = np.zeros(len(group), dtype=np.int64)
    crowded = counts * (counts - 1) > 2 * sizes
    for i in np.flatnonzero(crowded).tolist():
        out[first[i]:first[i] + counts[i]] = np.sort(rng.choice(sizes[i], counts[i], replace=False))
    todo = ~crowded
    while todo.any():
        sel = np.flatnonzero(todo[group])
        draws = (rng.random(len(sel)) * sizes[group[sel]]).astype(np.int64)
        draws = draws[np.lexsort((draws, group[sel]))]  # sorted within each group; groups stay in place
        out[sel] = draws
        same_group = group[sel][1:] == group[sel][:-1]
        todo[:] = False
        todo[group[sel][1:][same_group & (draws[1:] == draws[:-1])]] = True
    return out


def _write_mask_samples(out: dict, smp: _Samples, base: np.ndarray, span_sample: np.ndarray, span_start: np.ndarray,
                        span_len: np.ndarray, tokens: np.ndarray, langs: np.ndarray, rng: np.random.Generator) -> None:
    """Part A (spans -> one [MASK] each) and Part B (shuffled `<sop> span` -> `span <eop>`, each at its
    [MASK]'s position) of every [MASK] sample, for all of them at once on the flat output `out`.
    Works on the [MASK] windows laid end to end ("packed" positions)."""
    ids = np.flatnonzero(smp.is_mask)
    n = smp.n[ids]
    packed_start = np.cumsum(n) - n
    stream_pos = _ranges(smp.start[ids], n)
    owner = np.repeat(np.arange(len(ids)), n)
    local = np.zeros(len(smp.n), dtype=np.int64)
    local[ids] = np.arange(len(ids))
    span_owner = local[span_sample]
    g = span_start - smp.start[span_sample] + packed_start[span_owner]
    inside = np.zeros(len(stream_pos) + 1, dtype=np.int32)  # >0 on the 2nd..last token of every span
    inside[g + 1] += 1
    inside[g + span_len] -= 1
    in_part_a = np.cumsum(inside[:-1]) == 0
    rank = np.cumsum(in_part_a) - 1
    first_rank = rank[packed_start] - in_part_a[packed_start] + 1 if len(ids) else rank[:0]
    part_a = np.flatnonzero(in_part_a)
    slot = rank[part_a] - first_rank[owner[part_a]]
    dest = base[ids][owner[part_a]] + slot
    a_tokens = tokens[stream_pos[part_a]]
    is_span_start = np.zeros(len(stream_pos), dtype=bool)
    is_span_start[g] = True
    a_tokens[is_span_start[part_a]] = MASK
    out["tokens"][dest] = a_tokens
    out["position_ids"][dest] = slot
    out["prefix"][dest] = 1
    out["langs"][dest] = langs[stream_pos[part_a]]
    part_a_len = np.bincount(owner[part_a], minlength=len(ids))

    order = np.lexsort((rng.random(len(g)), span_owner))  # shuffled within each sample
    owner_b, g, ln = span_owner[order], g[order], span_len[order]
    mask_pos = rank[g] - first_rank[owner_b]
    piece = ln + 1
    before = np.cumsum(piece) - piece
    first, run = _first_of_runs(owner_b)
    dest = _ranges(base[ids][owner_b] + part_a_len[owner_b] + before - before[first][run], piece)
    rel = np.arange(len(dest)) - np.repeat(before, piece)  # 0 = <sop>
    src = stream_pos[np.repeat(g, piece) + np.maximum(rel - 1, 0)]  # the stream token fed at each slot
    b_tokens = tokens[src]
    b_tokens[rel == 0] = SOP
    last = rel == np.repeat(ln, piece)
    b_targets = np.empty_like(b_tokens)
    b_targets[~last] = tokens[stream_pos[(np.repeat(g, piece) + rel)[~last]]]
    b_targets[last] = EOP
    out["tokens"][dest] = b_tokens
    out["targets"][dest] = b_targets
    out["position_ids"][dest] = np.repeat(mask_pos, piece)
    out["langs"][dest] = langs[src]


def _write_gmask_samples(out: dict, smp: _Samples, fraction: np.ndarray, tokens: np.ndarray,
                         langs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`prefix [gMASK]` then `<sop> suffix[:-1]` predicting `suffix`, positions counting on; each
    sample fills its own row from slot 0. Returns the generated and window lengths."""
    ids = np.flatnonzero(~smp.is_mask)
    n = smp.n[ids]
    gen = np.clip(np.round(fraction * n).astype(np.int64), 1, n)
    for r, c, w, keep in zip(smp.row[ids].tolist(), smp.start[ids].tolist(), n.tolist(), (n - gen).tolist()):
        window, wlang = tokens[c:c + w], langs[c:c + w]
        out["tokens"][r, :keep] = window[:keep]
        out["tokens"][r, keep:keep + 2] = (GMASK, SOP)
        out["tokens"][r, keep + 2:w + 1] = window[keep:-1]
        out["targets"][r, keep + 1:w + 1] = window[keep:]
        out["position_ids"][r, :w + 1] = np.arange(w + 1)
        out["prefix"][r, :keep + 1] = 1
        out["langs"][r, :keep] = wlang[:keep]
        out["langs"][r, keep] = wlang[max(keep - 1, 0)]  # [gMASK]: the document it follows
        out["langs"][r, keep + 1] = wlang[keep]  # <sop>: the document it starts generating
        out["langs"][r, keep + 2:w + 1] = wlang[keep:-1]
    return gen, n


def _assign_to_pieces(wanted: list[int], room: list[int], uniforms: list[float], stats: BuildStats) -> list[list[int]]:
    """Each span to a piece with room for it, with probability proportional to the room (plain
    Python: a handful of pieces per window, where numpy's per-call cost dominates)."""
    assigned: list[list[int]] = [[] for _ in room]
    for length, x in zip(wanted, uniforms):
        fits = [i for i, u in enumerate(room) if u > length]
        if not fits:
            largest = max(room)
            if largest < 2:
                stats.dropped_spans += 1
                continue
            length = largest - 1
            fits = [i for i, u in enumerate(room) if u == largest]
            stats.shortened_spans += 1
        target = x * sum(room[i] for i in fits)
        choice = fits[-1]
        for i in fits:
            target -= room[i]
            if target < 0:
                choice = i
                break
        assigned[choice].append(length)
        room[choice] -= length + 1
    return assigned
