"""AdaRound's annealed rounding regularizer (Nagel et al., ICML 2020; BRECQ, Li et al., ICLR 2021).

No regularizer for the first ``warm_up`` fraction of the iterations; then β decays linearly from
``b_range[0]`` to ``b_range[1]`` and the loss is ``weight * Σ 1 - |2h(α) - 1|^β``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundingSchedule:
    """β and the regularizer weight at iteration ``t`` of ``iters``."""

    iters: int
    warm_up: float
    b_range: tuple[float, float]
    weight: float

    @property
    def start(self) -> int:
        """The first iteration with the regularizer on."""
        return int(self.warm_up * self.iters)

    def beta(self, t: int) -> float:
        start_b, end_b = self.b_range
        span = max(self.iters - self.start, 1)
        rel = min(max((t - self.start) / span, 0.0), 1.0)
        return end_b + (start_b - end_b) * (1.0 - rel)

    def lam(self, t: int) -> float:
        """The regularizer's weight: 0 during warm-up."""
        return 0.0 if t < self.start else self.weight
