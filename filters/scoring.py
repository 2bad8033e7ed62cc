"""Precision and recall of one class, counted on a labelled set (language ID, PII, the quality classifier)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        """Of the predictions of the class, the share that is right; 0 where it was never predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """Of the labelled members of the class, the share predicted; 0 where the set holds none."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
