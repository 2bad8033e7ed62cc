"""Learning rate and batch size as pure functions of the training position (so the step and the
consumed samples are the whole scheduler state a checkpoint needs)."""
from __future__ import annotations

import math

from trainer.config import TrainConfig


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay from `lr` to `min_lr` at `max_steps`
    (step counts optimizer steps already taken, so the first step uses learning_rate(0))."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
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
