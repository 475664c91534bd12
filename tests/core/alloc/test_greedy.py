"""The greedy allocator: within budget, equal to a heap reference, optimal on convex unit steps."""
from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np
import pytest

from rdoq_plugins.alloc import RDTable, allocate_greedy, lower_hull

Brute = Callable[[RDTable, float], float]
Make = Callable[[np.random.Generator, str, int, int], RDTable]
Budget = Callable[[np.random.Generator, RDTable], float]


def heap_greedy(table: RDTable, budget: float) -> list[int]:
    """The greedy as the brief states it: a max-heap of each group's next hull step."""
    hull = lower_hull(table)
    level = [0] * table.num_groups
    rem = budget - float(hull.rate[:, 0].sum())
    heap = []
    for g in range(table.num_groups):
        if hull.size[g] > 1:
            heap.append((-float(hull.gain[g, 0]), g, 0))
    heapq.heapify(heap)
    while heap:
        _, g, j = heapq.heappop(heap)
        step = float(hull.rate[g, j + 1] - hull.rate[g, j])
        if step <= rem:
            rem -= step
            level[g] = j + 1
            if j + 2 < hull.size[g]:
                heapq.heappush(heap, (-float(hull.gain[g, j + 1]), g, j + 1))
    return [int(hull.index[g, lv]) for g, lv in enumerate(level)]


@pytest.mark.parametrize("kind", ["convex", "nonconvex", "ties", "float"])
def test_within_budget_and_never_better_than_optimal(kind: str, brute: Brute, make_table: Make,
                                                     make_budget: Budget) -> None:
    rng = np.random.default_rng(30)
    for _ in range(40):
        table = make_table(rng, kind, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        budget = make_budget(rng, table)
        a = allocate_greedy(table, budget)
        assert a.rate <= budget and a.solver == "greedy"
        assert a.distortion >= brute(table, budget) * (1 - 1e-12)


@pytest.mark.parametrize("kind", ["convex", "nonconvex"])
def test_matches_the_heap_reference(kind: str, make_table: Make, make_budget: Budget) -> None:
    rng = np.random.default_rng(31)
    for _ in range(30):
        table = make_table(rng, kind, int(rng.integers(1, 80)), int(rng.integers(1, 10)))
        budget = make_budget(rng, table)
        assert allocate_greedy(table, budget).choice.tolist() == heap_greedy(table, budget)


def test_optimal_on_convex_unit_steps(brute: Brute) -> None:
    # Separable convex curves with unit rate steps: marginal analysis is optimal.
    rng = np.random.default_rng(32)
    for _ in range(30):
        groups, choices = int(rng.integers(1, 5)), int(rng.integers(2, 6))
        drops = -np.sort(-rng.uniform(0.1, 5.0, size=(groups, choices - 1)), axis=1)
        dist = np.concatenate([np.zeros((groups, 1)), -np.cumsum(drops, axis=1)], axis=1) + 50.0
        table = RDTable(np.tile(np.arange(choices, dtype=np.float64), (groups, 1)), dist)
        for budget in range(groups * (choices - 1) + 1):
            assert allocate_greedy(table, budget).distortion == pytest.approx(brute(table, budget), rel=1e-12)


def test_a_step_that_does_not_fit_stops_only_its_group() -> None:
    # Group 0's next step (rate 10) has the best gain but does not fit; group 1's small steps still do.
    table = RDTable(np.array([[0.0, 10.0], [0.0, 1.0]]), np.array([[100.0, 0.0], [5.0, 4.0]]))
    a = allocate_greedy(table, 3.0)
    assert a.choice.tolist() == [0, 1] and a.rate == 1.0


def test_starts_at_the_least_rate_and_rejects_infeasible_budgets() -> None:
    table = RDTable(np.array([[2.0, 1.0, 3.0]]), np.array([[1.0, 4.0, 0.0]]), np.array([[True, True, False]]))
    assert allocate_greedy(table, 1.5).choice.tolist() == [1]
    with pytest.raises(ValueError, match="minimum achievable total rate is 1"):
        allocate_greedy(table, 0.9)
