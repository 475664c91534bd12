"""The Lagrangian allocator: within budget, optimal for the rate it spends, at the critical price."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rdoq_plugins.alloc import RDTable, allocate_lagrangian, dual_bound

Brute = Callable[[RDTable, float], float]
Make = Callable[[np.random.Generator, str, int, int], RDTable]
Budget = Callable[[np.random.Generator, RDTable], float]


def per_group_minimizers(table: RDTable, lam: float) -> np.ndarray:
    """argmin d + lam r per group, ties to the lower rate (brute force over all allowed choices)."""
    score = np.where(table.mask, table.distortion + lam * np.where(table.mask, table.rate, 0.0), np.inf)
    tied = score <= score.min(axis=1, keepdims=True) * (1 + 1e-12) + 1e-300
    return np.argmin(np.where(tied, table.rate, np.inf), axis=1)


@pytest.mark.parametrize("kind", ["convex", "nonconvex", "ties", "float"])
def test_within_budget_and_optimal_for_its_own_rate(kind: str, brute: Brute, make_table: Make,
                                                      make_budget: Budget) -> None:
    rng = np.random.default_rng(20)
    for _ in range(40):
        table = make_table(rng, kind, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        budget = make_budget(rng, table)
        a = allocate_lagrangian(table, budget)
        assert a.rate <= budget and a.solver == "lagrangian" and a.lam is not None and a.lam >= 0
        # A minimizer of d + lam r is the best allocation of at most its own rate.
        assert a.distortion == pytest.approx(brute(table, a.rate), rel=1e-12, abs=1e-300)
        assert a.lower_bound is not None and a.lower_bound <= brute(table, budget) * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("kind", ["convex", "nonconvex"])
def test_price_is_the_least_that_fits(kind: str, make_table: Make, make_budget: Budget) -> None:
    rng = np.random.default_rng(21)
    for _ in range(40):
        table = make_table(rng, kind, 30, 8)
        budget = make_budget(rng, table)
        a = allocate_lagrangian(table, budget)
        assert a.lam is not None
        assert np.array_equal(a.choice, per_group_minimizers(table, a.lam))
        if a.lam > 0:  # any lower price overspends
            cheaper = per_group_minimizers(table, a.lam * (1 - 1e-6))
            assert table.evaluate(cheaper)[0] > budget
        else:
            assert a.rate == table.saturation_rate()


def test_exact_when_the_budget_is_a_hull_rate() -> None:
    # Convex unit-step curves: at a budget the Lagrangian meets exactly, it is optimal.
    table = RDTable(np.tile(np.arange(5.0), (3, 1)),
                    np.array([[16.0, 8, 4, 2, 1], [9.0, 3, 1, 0.5, 0.2], [20.0, 10, 6, 3, 2.5]]))
    a = allocate_lagrangian(table, 5.0)
    # Gains: group 0 8,4,2,1; group 1 6,2,.5,.3; group 2 10,4,3,.5. Price 3 takes 10, 8, 6, 4, 4: rate 5.
    assert a.lam == 3.0 and a.rate == 5.0 and a.distortion == 4 + 3 + 6
    assert a.lower_bound == pytest.approx(a.distortion)


def test_tolerance_stops_early_but_stays_feasible(make_table: Make) -> None:
    rng = np.random.default_rng(22)
    table = make_table(rng, "convex", 500, 9)
    budget = 0.5 * (table.min_rate() + table.saturation_rate())
    exact, loose = allocate_lagrangian(table, budget), allocate_lagrangian(table, budget, tol=0.05)
    assert loose.rate <= budget and budget - loose.rate <= 0.05 * budget
    assert exact.rate >= loose.rate and exact.distortion <= loose.distortion
    assert loose.stats["evaluations"] <= exact.stats["evaluations"]
    with pytest.raises(ValueError, match="tol"):
        allocate_lagrangian(table, budget, tol=-1.0)


def test_dual_bound_never_exceeds_the_optimum(brute: Brute, make_table: Make, make_budget: Budget) -> None:
    rng = np.random.default_rng(23)
    for _ in range(20):
        table = make_table(rng, "nonconvex", 4, 5)
        budget = make_budget(rng, table)
        best = brute(table, budget)
        for lam in (0.0, 0.01, 0.3, 1.0, 10.0):
            assert dual_bound(table, lam, budget) <= best * (1 + 1e-12) + 1e-12


def test_infeasible_budget_and_unbounded_budget() -> None:
    table = RDTable(np.array([[1.0, 2.0]]), np.array([[3.0, 1.0]]))
    with pytest.raises(ValueError, match="budget 0.5 .*minimum achievable total rate is 1"):
        allocate_lagrangian(table, 0.5)
    a = allocate_lagrangian(table, float("inf"))
    assert a.choice.tolist() == [1] and a.lam == 0.0 and a.lower_bound == 1.0
