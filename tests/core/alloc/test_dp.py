"""The exact DP equals brute force, respects the budget and beats the approximate allocators."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import rdoq_plugins.alloc.dp as dp_module
from rdoq_plugins.alloc import RDTable, allocate_dp, allocate_greedy, allocate_lagrangian
from rdoq_plugins.alloc.dp import knapsack, rate_units

Brute = Callable[[RDTable, float], float]
Make = Callable[[np.random.Generator, str, int, int], RDTable]
Budget = Callable[[np.random.Generator, RDTable], float]
KINDS = ["convex", "nonconvex", "ties"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fix", [True, False])
def test_matches_brute_force(kind: str, fix: bool, brute: Brute, make_table: Make,
                             make_budget: Budget) -> None:
    rng = np.random.default_rng(1)
    for _ in range(60):
        table = make_table(rng, kind, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        budget = make_budget(rng, table)
        got = allocate_dp(table, budget, fix=fix)
        want = brute(table, budget)
        if kind == "ties":  # small integers: the sums are exact
            assert got.distortion == want
        else:
            assert got.distortion == pytest.approx(want, rel=1e-12, abs=1e-300)
        assert got.rate <= budget and got.solver == "dp"
        assert table.evaluate(got.choice) == (got.rate, got.distortion)


def test_matches_brute_force_with_a_rate_unit(brute: Brute, make_table: Make, make_budget: Budget) -> None:
    # Rates that are already multiples of the unit (up to round-off) must not be rounded up.
    rng = np.random.default_rng(2)
    for _ in range(40):
        base = make_table(rng, "nonconvex", int(rng.integers(1, 6)), int(rng.integers(2, 6)))
        table = RDTable(base.rate * 0.1, base.distortion, base.allowed)
        budget = make_budget(rng, table)
        got = allocate_dp(table, budget, rate_unit=0.1)
        assert got.distortion == pytest.approx(brute(table, budget), rel=1e-12)
        assert got.rate <= budget * (1 + 1e-12)


def test_rounds_non_integer_rates_up() -> None:
    table = RDTable(np.array([[0.0, 1.4, 2.6]]), np.array([[9.0, 4.0, 1.0]]))
    with pytest.raises(ValueError, match="rate_unit"):
        allocate_dp(table, 2.0)
    units, unit = rate_units(table, 1.0)
    assert units.tolist() == [[0, 2, 3]] and unit == 1.0
    # 1.4 counts as 2 units, so a budget of 1.5 affords nothing but the first choice.
    assert allocate_dp(table, 1.5, rate_unit=1.0).choice.tolist() == [0]
    assert allocate_dp(table, 2.0, rate_unit=1.0).choice.tolist() == [1]
    assert allocate_dp(table, 2.0, rate_unit=0.2).choice.tolist() == [1]


def test_unit_is_the_gcd_of_the_rates() -> None:
    table = RDTable(np.array([[0, 256, 512], [0, 384, 768]]), np.ones((2, 3)))
    units, unit = rate_units(table)
    assert unit == 128.0 and units.tolist() == [[0, 2, 4], [0, 3, 6]]


@pytest.mark.parametrize("kind", KINDS + ["float"])
def test_respects_budget(kind: str, make_table: Make) -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        table = make_table(rng, kind, int(rng.integers(20, 60)), int(rng.integers(2, 9)))
        unit = 0.01 if kind == "float" else None
        # Rounding up costs less than one unit a group.
        lo = table.min_rate() + (table.num_groups * 0.01 if unit else 0.0)
        for budget in np.linspace(lo, table.saturation_rate(), 5):
            a = allocate_dp(table, float(budget), rate_unit=unit)
            assert a.rate <= budget * (1 + 1e-12) + 1e-12
            assert table.mask[np.arange(table.num_groups), a.choice].all()


@pytest.mark.parametrize("kind", KINDS)
def test_never_worse_than_lagrangian_or_greedy(kind: str, make_table: Make, make_budget: Budget) -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        table = make_table(rng, kind, int(rng.integers(50, 200)), int(rng.integers(2, 11)))
        budget = make_budget(rng, table)
        exact = allocate_dp(table, budget)
        plain = allocate_dp(table, budget, fix=False)
        assert exact.distortion == pytest.approx(plain.distortion, rel=1e-12, abs=1e-300)
        for other in (allocate_lagrangian(table, budget), allocate_greedy(table, budget)):
            assert exact.distortion <= other.distortion * (1 + 1e-12)
            assert other.lower_bound is None or other.lower_bound <= exact.distortion * (1 + 1e-12)


@pytest.mark.parametrize("core", [1, 4, 256])
def test_fixing_is_exact_on_many_groups_with_a_duality_gap(core: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Mixed group sizes leave the Lagrangian short of the budget, so the core rounds must run (a
    # small first core forces the growing rounds); the plain dense DP is the reference.
    monkeypatch.setattr(dp_module, "_CORE", core)
    rng = np.random.default_rng(5)
    groups, choices = 400, 9
    size = rng.integers(5, 12, size=(groups, 1))
    decay = rng.uniform(1.5, 2.5, size=(groups, 1))
    dist = rng.lognormal(size=(groups, 1)) * np.exp2(-decay * np.arange(choices))
    dist[: groups // 5] *= rng.uniform(0.3, 1.7, size=(groups // 5, choices))
    table = RDTable(np.arange(choices) * size, dist)
    for bits in (1.3, 2.7, 4.1):
        budget = bits * float(size.sum())
        exact, plain = allocate_dp(table, budget), allocate_dp(table, budget, fix=False)
        assert exact.stats["gap_initial"] > 0  # the instance is not settled by the bounds alone
        assert exact.distortion == pytest.approx(plain.distortion, rel=1e-12)
        assert exact.stats["groups_dp"] < groups and exact.stats["rounds"] >= 1
        assert exact.lower_bound is not None and exact.lower_bound <= exact.distortion


@pytest.mark.parametrize("core", [1, 2, 4])
def test_core_rounds_match_the_dense_dp(core: int, make_table: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny first core rarely holds the optimum, so a round must not certify too early.
    monkeypatch.setattr(dp_module, "_CORE", core)
    rng = np.random.default_rng(0)
    for i in range(120):
        table = make_table(rng, KINDS[i % 3], int(rng.integers(10, 60)), int(rng.integers(2, 9)))
        budget = float(rng.uniform(table.min_rate(), table.saturation_rate()))
        exact, plain = allocate_dp(table, budget), allocate_dp(table, budget, fix=False)
        assert exact.distortion == pytest.approx(plain.distortion, rel=1e-12, abs=1e-300)


def total(dists: list[np.ndarray], pos: np.ndarray) -> float:
    return math.fsum(float(d[p]) for d, p in zip(dists, pos))


def test_chunked_backtrack_matches_the_whole_table() -> None:
    rng = np.random.default_rng(6)
    for _ in range(10):
        n = int(rng.integers(5, 40))
        rates = [np.concatenate([[0], np.sort(rng.choice(np.arange(1, 30), size=3, replace=False))])
                 for _ in range(n)]
        dists = [np.sort(rng.uniform(0, 10, size=4))[::-1].copy() for _ in range(n)]
        cap = int(rng.integers(0, 15 * n))
        whole = knapsack(rates, dists, cap, math.inf)
        assert sum(int(r[p]) for r, p in zip(rates, whole)) <= cap
        for chunk in (1, 3, 7):
            chunked = knapsack(rates, dists, cap, math.inf, chunk=chunk)
            assert sum(int(r[p]) for r, p in zip(rates, chunked)) <= cap
            assert total(dists, chunked) == pytest.approx(total(dists, whole), rel=1e-12)


def test_memory_bound_switches_to_chunks_before_failing() -> None:
    rng = np.random.default_rng(8)
    n, cap = 300, 2000
    rates = [np.array([0, int(rng.integers(1, 15)), int(rng.integers(15, 30))]) for _ in range(n)]
    dists = [np.sort(rng.uniform(0, 10, size=3))[::-1].copy() for _ in range(n)]
    whole = knapsack(rates, dists, cap, math.inf)
    # Room for the checkpoints and one chunk (about 180 widths) but not for 300 rows of argmins.
    chunked = knapsack(rates, dists, cap, 200 * (cap + 1))
    assert total(dists, chunked) == pytest.approx(total(dists, whole), rel=1e-12)
    with pytest.raises(MemoryError, match="memory_mb"):
        knapsack(rates, dists, cap, 100 * (cap + 1))


def test_memory_bound_raises_a_clear_error() -> None:
    rate = np.arange(5)[None, :] * np.arange(1000, 1200)[:, None]
    table = RDTable(rate, np.tile([5.0, 3.0, 2.0, 1.5, 1.0], (200, 1)))
    with pytest.raises(MemoryError, match="memory_mb"):
        allocate_dp(table, 0.5 * table.max_rate(), memory_mb=0.01, fix=False)


def test_infeasible_budget_says_budget_and_minimum() -> None:
    table = RDTable(np.array([[2.0, 4.0], [3.0, 5.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"budget 4 .*minimum achievable total rate is 5"):
        allocate_dp(table, 4.0)
    allowed = np.array([[False, True], [True, True]])
    with pytest.raises(ValueError, match="minimum achievable total rate is 7"):
        allocate_dp(RDTable(table.rate, table.distortion, allowed), 6.0)


def test_budget_above_max_rate_picks_min_distortion(make_table: Make) -> None:
    rng = np.random.default_rng(7)
    for kind in KINDS:
        table = make_table(rng, kind, 30, 6)
        for budget in (table.max_rate(), table.max_rate() + 10.0, math.inf):
            a = allocate_dp(table, budget)
            least = float(table.masked_distortion().min(axis=1).sum())
            assert a.distortion == pytest.approx(least, rel=1e-12)


def test_budget_at_min_rate_takes_the_least_rate_choices() -> None:
    rate = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    table = RDTable(rate, np.array([[5.0, 2.0, 1.0], [4.0, 3.0, 0.0]]))
    assert allocate_dp(table, 0.0).choice.tolist() == [0, 1]
