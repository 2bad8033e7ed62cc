"""Learning rate and batch size as pure functions of the samples consumed (so the consumed samples
are the whole scheduler state a checkpoint needs). Both count samples, not steps, as Megatron's
--lr-warmup-samples and --rampup-batch-size: under GLM-130B's ramp-up (192 -> 4224 sequences) a
warmup counted in steps would cover a tiny share of the samples it is meant to."""
from __future__ import annotations

import math

from trainer.config import TrainConfig


def learning_rate(consumed_samples: int, cfg: TrainConfig, decay_samples: int) -> float:
    """Linear warmup over `warmup_samples`, then cosine from `lr` to `min_lr` at `decay_samples`
    (the rate of the step that starts after `consumed_samples`)."""
    if consumed_samples < cfg.warmup_samples:
        return cfg.lr * (consumed_samples + 1) / cfg.warmup_samples
    progress = min(1.0, (consumed_samples - cfg.warmup_samples) / max(1, decay_samples - cfg.warmup_samples))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def global_batch_size(consumed_samples: int, cfg: TrainConfig, dp_size: int) -> int:
    """Batch-size ramp-up (GLM-130B: 192 -> 4224 sequences over the first 2.5% of samples): grows
    linearly with the samples consumed, in whole multiples of micro_batch_size * dp_size."""
    unit = cfg.micro_batch_size * dp_size
    if cfg.global_batch_size % unit:
        raise ValueError(f"train.global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size "
                         f"x data-parallel ranks = {unit}")
    if cfg.rampup_start_batch_size is None or consumed_samples >= cfg.rampup_samples:
        return cfg.global_batch_size
    fraction = consumed_samples / cfg.rampup_samples
    size = cfg.rampup_start_batch_size + fraction * (cfg.global_batch_size - cfg.rampup_start_batch_size)
    return max(unit, int(size) // unit * unit)


def run_samples(cfg: TrainConfig, dp_size: int) -> int:
    """The end of the decay: `lr_decay_samples`, else the samples `max_steps` steps consume under
    the ramp-up."""
    if cfg.lr_decay_samples is not None:
        return cfg.lr_decay_samples
    consumed, steps = 0, 0
    while steps < cfg.max_steps and cfg.rampup_start_batch_size is not None and consumed < cfg.rampup_samples:
        consumed += global_batch_size(consumed, cfg, dp_size)
        steps += 1
    return consumed + (cfg.max_steps - steps) * cfg.global_batch_size
