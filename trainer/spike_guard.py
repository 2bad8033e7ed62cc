"""Loss-spike guard: decide, before the optimizer step, whether to skip it.

A step is skipped when the loss or the gradient norm is non-finite, or when either exceeds
`factor` times its running mean (an exponential moving average over accepted steps, active after
`warmup_steps` accepted steps). GLM-130B's runs suffered loss spikes; skipping the batch that causes
one is the cheap first defence (PaLM restarted from a checkpoint and skipped ~200 batches instead).
Every rank sees the same all-reduced loss and the same global norm, so all ranks decide alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class SpikeGuard:
    factor: float
    warmup_steps: int
    ema: float
    loss_mean: float = 0.0
    grad_norm_mean: float = 0.0
    accepted: int = 0
    consecutive_skips: int = 0
    STATE = ("loss_mean", "grad_norm_mean", "accepted", "consecutive_skips")
    max_consecutive_skips: int = 10  # then the run stops: skipping is not helping

    def check(self, loss: float, grad_norm: float) -> str | None:
        """The reason to skip this step, or None (and the running means take the step in)."""
        reason = None
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            reason = f"non-finite loss {loss} or grad norm {grad_norm}"
        elif self.accepted >= self.warmup_steps and loss > self.factor * self.loss_mean:
            reason = f"loss {loss:.4g} > {self.factor} x running mean {self.loss_mean:.4g}"
        elif self.accepted >= self.warmup_steps and grad_norm > self.factor * self.grad_norm_mean:
            reason = f"grad norm {grad_norm:.4g} > {self.factor} x running mean {self.grad_norm_mean:.4g}"
        if reason:
            self.consecutive_skips += 1
            if self.consecutive_skips >= self.max_consecutive_skips:
                raise RuntimeError(f"{self.consecutive_skips} consecutive steps skipped by the loss-spike guard "
                                   f"(last: {reason}); resume from an earlier checkpoint with a lower learning rate")
            return reason
        self.consecutive_skips = 0
        # Bias-corrected EMA: the first steps are a plain mean, later ones forget slowly.
        self.accepted += 1
        weight = max(1.0 - self.ema, 1.0 / self.accepted)
        self.loss_mean += weight * (loss - self.loss_mean)
        self.grad_norm_mean += weight * (grad_norm - self.grad_norm_mean)
        return None

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])
