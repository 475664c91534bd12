"""Random rate-distortion tables and a brute-force reference for the allocator tests."""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

from rdoq_plugins.alloc import RDTable


def brute_force(table: RDTable, budget: float) -> float:
    """The least total distortion of any allocation within ``budget`` (inf if none), by enumeration."""
    best = math.inf
    options = [np.flatnonzero(table.mask[g]) for g in range(table.num_groups)]
    for choice in itertools.product(*options):
        rate, dist = table.evaluate(np.array(choice, dtype=np.int64))
        if rate <= budget:
            best = min(best, dist)
    return best


def random_table(rng: np.random.Generator, kind: str, groups: int, choices: int) -> RDTable:
    """A small table: ``kind`` is "convex" (bit-width curves), "nonconvex", "ties" (small integers)
    or "float" (non-integer rates); about a fifth of the choices are disallowed (never a whole group)."""
    if kind == "ties":
        rate = rng.integers(0, 5, size=(groups, choices)).astype(np.float64)
        dist = rng.integers(0, 6, size=(groups, choices)).astype(np.float64)
    elif kind == "float":
        rate = rng.uniform(0, 10, size=(groups, choices))
        dist = rng.uniform(0, 10, size=(groups, choices))
    else:
        size = rng.integers(1, 9, size=(groups, 1))
        rate = np.arange(choices)[None, :] * size.astype(np.float64)
        decay = rng.uniform(1, 2.5, size=(groups, 1))
        dist = rng.lognormal(size=(groups, 1)) * np.exp2(-decay * np.arange(choices))
        if kind == "nonconvex":
            dist = dist * rng.uniform(0.2, 1.8, size=dist.shape)
    allowed = rng.random((groups, choices)) > 0.2
    allowed[np.arange(groups), rng.integers(0, choices, size=groups)] = True
    return RDTable(rate, dist, allowed)


def random_budget(rng: np.random.Generator, table: RDTable) -> float:
    """A budget between the least rate and a little beyond the least-distortion rate."""
    lo, hi = table.min_rate(), table.saturation_rate()
    return float(rng.uniform(lo, hi + 0.1 * (hi - lo) + 1))


@pytest.fixture()
def brute() -> Callable[[RDTable, float], float]:
    return brute_force


@pytest.fixture()
def make_table() -> Callable[[np.random.Generator, str, int, int], RDTable]:
    return random_table


@pytest.fixture()
def make_budget() -> Callable[[np.random.Generator, RDTable], float]:
    return random_budget
