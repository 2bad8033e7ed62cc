"""GLM blank infilling (GLM-130B, arXiv 2210.02414; THUDM/GLM), pure numpy.

A shard is built from a contiguous slice of the token stream (every document followed by <eos>) in
two steps, each with its own random stream:

1. `GLMObjective.plan(rng, n)`: the corruption of n sequences, drawn without looking at any token:
   each sequence is [MASK] (probability `mask_share`, 0.3) or [gMASK]; a [MASK] sequence packs
   `seq_len // mask_sample_len` samples, each with span lengths from Poisson(3) restricted to 1..39
   drawn until they cover 15% of the sample's own tokens; a [gMASK] sequence gets the fraction of
   it to generate, uniform in [0.2, 1.0]. Every sample then consumes a known number of stream
   tokens (mask_sample_len - 2 * spans, or seq_len - 1), so the stream offset where each shard
   starts is a prefix sum of plan totals: shards are built in parallel, and every sequence is full
   except the very last one.
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


def build_sequences(plan: ShardPlan, tokens: np.ndarray, langs: np.ndarray, rng: np.random.Generator
                    ) -> tuple[dict[str, np.ndarray], list[str], BuildStats]:
    """Pack the stream slice `tokens` (documents each followed by <eos>; `langs` per token) into the
    plan's sequences. The slice holds plan.total_tokens() tokens, or fewer at the end of the
    corpus, where the last sequence is partial and the plan's remaining sequences are left out.
    `rng` places spans and shuffles Part B."""
    obj = plan.objective
    builder = _Builder(obj, len(plan.is_mask), tokens, langs, rng)
    spans_at = np.concatenate([[0], np.cumsum(plan.span_counts)])
    sample = 0
    for row, is_mask in enumerate(plan.is_mask.tolist()):
        if builder.exhausted():
            break
        if is_mask:
            builder.stats.mask_sequences += 1
            for _ in range(obj.samples_per_mask_sequence):
                lengths = plan.span_lengths[spans_at[sample]:spans_at[sample + 1]]
                sample += 1
                if not builder.exhausted():
                    builder.mask_sample(row, lengths)
        else:
            builder.gmask_sample(row, float(plan.gmask_fraction[row]))
        builder.stats.sequences += 1
    columns = {c: v[:builder.stats.sequences] for c, v in builder.out.items()}
    kinds = ["MASK" if m else "gMASK" for m in plan.is_mask[:builder.stats.sequences].tolist()]
    return columns, kinds, builder.stats


class _Builder:
    """Writes samples into preallocated [rows, seq_len] arrays, consuming the stream in order."""

    def __init__(self, obj: GLMObjective, n_rows: int, tokens: np.ndarray, langs: np.ndarray,
                 rng: np.random.Generator):
        self.obj = obj
        self.tokens = np.asarray(tokens, dtype=np.int32)
        self.langs = np.asarray(langs, dtype=np.int8)
        self.rng = rng
        self.cursor = 0  # next stream token
        self.row = -1
        self.offset = 0  # next free slot in the current row
        self.segment = 0
        self.out = empty_columns(n_rows, obj.seq_len)
        self.stats = BuildStats.empty(obj)

    def exhausted(self) -> bool:
        return self.cursor >= len(self.tokens)

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.cursor, min(self.cursor + n, len(self.tokens))
        self.cursor = hi
        return self.tokens[lo:hi], self.langs[lo:hi]

    def _put(self, row: int, part_a: tuple, part_b: tuple) -> None:
        """Write one sample (Part A: tokens, langs; Part B: tokens, targets, positions, langs)."""
        if row != self.row:
            self.row, self.offset, self.segment = row, 0, 0
        self.segment += 1
        a_tok, a_lang = part_a
        b_tok, b_tgt, b_pos, b_lang = part_b
        n_a, n_b = len(a_tok), len(b_tok)
        o, r = self.offset, row
        end = o + n_a + n_b
        out = self.out
        out["tokens"][r, o:o + n_a] = a_tok
        out["tokens"][r, o + n_a:end] = b_tok
        out["targets"][r, o + n_a:end] = b_tgt
        out["position_ids"][r, o:o + n_a] = np.arange(n_a)
        out["position_ids"][r, o + n_a:end] = b_pos
        out["segment_ids"][r, o:end] = self.segment
        out["prefix"][r, o:o + n_a] = 1
        out["langs"][r, o:o + n_a] = a_lang
        out["langs"][r, o + n_a:end] = b_lang
        self.offset = end

    def gmask_sample(self, row: int, fraction: float) -> None:
        window, wlang = self._take(self.obj.seq_len - 1)
        n = len(window)
        gen = min(n, max(1, round(fraction * n)))
        keep = n - gen
        lang_at_gmask = wlang[keep - 1] if keep else wlang[0]
        part_a = (np.append(window[:keep], GMASK), np.append(wlang[:keep], lang_at_gmask))
        b_tok = np.concatenate([[SOP], window[keep:-1]])
        b_lang = np.concatenate([wlang[keep:keep + 1], wlang[keep:-1]])
        part_b = (b_tok, window[keep:], np.arange(keep + 1, keep + 1 + gen), b_lang)
        self._put(row, part_a, part_b)
        self.stats.gmask_samples += 1
        self.stats.gmask_ratio_hist[min(9, int(10 * gen / n))] += 1

    def mask_sample(self, row: int, lengths: np.ndarray) -> None:
        window, wlang = self._take(self.obj.mask_sample_len - 2 * len(lengths))
        starts, lens = self._place_spans(window, lengths)
        n, k = len(window), len(starts)
        # Part A: the window with each span's first token turned into [MASK] and the rest removed.
        inside = np.zeros(n + 1, dtype=np.int32)
        inside[starts + 1] += 1
        inside[starts + lens] -= 1
        keep = np.cumsum(inside[:n]) == 0
        a_tok = window.copy()
        a_tok[starts] = MASK
        part_a = (a_tok[keep], wlang[keep])
        # Part B: the spans in shuffled order, each <sop> span -> span <eop>, at its [MASK]'s position.
        mask_pos = starts - (np.cumsum(lens - 1) - (lens - 1))
        order = self.rng.permutation(k)
        s, ln = starts[order], lens[order]
        piece = ln + 1
        rel = np.arange(int(piece.sum())) - np.repeat(np.cumsum(piece) - piece, piece)  # 0 = <sop>
        src = np.repeat(s, piece) + rel - 1  # the window token fed at each Part B slot
        is_sop = rel == 0
        b_tok = window[np.maximum(src, 0)]
        b_tok[is_sop] = SOP
        b_tgt = window[np.minimum(src + 1, n - 1)]
        b_tgt[rel == np.repeat(ln, piece)] = EOP
        part_b = (b_tok, b_tgt, np.repeat(mask_pos[order], piece), wlang[src + is_sop])
        self._put(row, part_a, part_b)
        st = self.stats
        st.mask_samples += 1
        st.mask_sample_tokens += n
        st.masked_tokens += int(lens.sum())
        st.span_length_hist += np.bincount(lens, minlength=len(st.span_length_hist))

    def _place_spans(self, window: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start offsets and lengths (sorted by start) of spans placed at random in `window`, each
        inside one document (never over an <eos>), with at least one kept token between spans.

        Spans go one by one to a document piece with room, chosen with probability proportional
        to its room; inside a piece the arrangement is uniform (stars and bars, as GLM's
        sample_spans). A span longer than any room left is shortened, and dropped if no room is."""
        eos = np.flatnonzero(window == EOS)
        piece_lo = np.concatenate([[0], eos + 1]).tolist()
        piece_hi = np.concatenate([eos, [len(window)]]).tolist()
        # Room in "units": a piece of d tokens holds spans with sum(L + 1) <= d + 1.
        room = [hi - lo + 1 for lo, hi in zip(piece_lo, piece_hi)]
        assigned: list[list[int]] = [[] for _ in room]
        rng = self.rng
        for length in lengths.tolist():
            fits = [i for i, u in enumerate(room) if u >= length + 1]
            if not fits:
                largest = max(room)
                if largest < 2:
                    self.stats.dropped_spans += 1
                    continue
                length = largest - 1
                fits = [i for i, u in enumerate(room) if u == largest]
                self.stats.shortened_spans += 1
            if len(fits) == 1:
                choice = fits[0]
            else:
                weights = np.array([room[i] for i in fits], dtype=np.float64)
                choice = fits[int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(), side="right"))]
            assigned[choice].append(length)
            room[choice] -= length + 1
        starts, lens = [], []
        for lo, hi, spans in zip(piece_lo, piece_hi, assigned):
            if not spans:
                continue
            m, span_arr = len(spans), np.asarray(spans, dtype=np.int64)
            free = (hi - lo) - int(span_arr.sum()) - (m - 1)
            slots = np.sort(rng.choice(free + m, m, replace=False))
            starts.append(lo + slots + np.cumsum(span_arr) - span_arr)
            lens.append(span_arr)
        if not starts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        starts_arr, lens_arr = np.concatenate(starts), np.concatenate(lens)
        order = np.argsort(starts_arr, kind="stable")
        return starts_arr[order], lens_arr[order]
