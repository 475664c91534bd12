"""AdaRound's annealed regularizer: off during warm-up, then β decays linearly to its end value."""
from __future__ import annotations

from itertools import pairwise

import pytest

from rdoq_plugins.recon import RoundingSchedule


def test_rounding_schedule() -> None:
    s = RoundingSchedule(iters=100, warm_up=0.2, b_range=(20.0, 2.0), weight=0.01)
    assert s.lam(19) == 0.0 and s.lam(20) == 0.01
    assert s.beta(20) == 20.0 and s.beta(100) == 2.0
    assert s.beta(60) == 11.0


def test_beta_is_monotone_and_clamped_outside_the_run() -> None:
    s = RoundingSchedule(iters=1000, warm_up=0.0, b_range=(20.0, 2.0), weight=0.5)
    betas = [s.beta(t) for t in range(0, 1001, 50)]
    assert betas[0] == 20.0 and betas[-1] == 2.0 and all(a > b for a, b in pairwise(betas))
    assert s.beta(-5) == 20.0 and s.beta(5000) == 2.0
    assert s.start == 0 and s.lam(0) == 0.5
    assert RoundingSchedule(iters=0, warm_up=0.2, b_range=(20.0, 2.0), weight=0.1).beta(0) == pytest.approx(20.0)
