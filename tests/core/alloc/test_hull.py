"""The lower convex hull: exactly the points some rate price makes a group's best choice."""
from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from rdoq_plugins.alloc import RDTable, lower_hull

Make = Callable[[np.random.Generator, str, int, int], RDTable]


def reference_hull(rate: np.ndarray, dist: np.ndarray, allowed: np.ndarray) -> list[tuple[float, float]]:
    """(rate, distortion) points minimizing ``d + lam r`` for some ``lam >= 0`` (lam = 0 only for the
    least-rate point among the least-distortion ones), by exact rational arithmetic."""
    pts = sorted({(float(r), float(d)) for r, d, a in zip(rate, dist, allowed) if a})
    d_min = min(d for _, d in pts)
    r_at_d_min = min(r for r, d in pts if d == d_min)
    out = []
    for rp, dp in pts:
        lo, hi = Fraction(0), None  # the lam interval where p is a (weak) minimizer
        ok = True
        for rq, dq in pts:
            if rq > rp:
                lo = max(lo, Fraction(dp - dq) / Fraction(rq - rp))
            elif rq < rp:
                bound = Fraction(dq - dp) / Fraction(rp - rq)
                hi = bound if hi is None else min(hi, bound)
            elif dq < dp:
                ok = False
        if not ok or (hi is not None and lo > hi):
            continue
        if hi == 0 and (rp, dp) != (r_at_d_min, d_min):
            continue
        out.append((rp, dp))
    return out


@pytest.mark.parametrize("kind", ["ties", "convex", "nonconvex"])
def test_vertices_are_exactly_the_lagrangian_minimizers(kind: str, make_table: Make) -> None:
    rng = np.random.default_rng(10)
    for _ in range(40):
        table = make_table(rng, kind, 8, int(rng.integers(1, 9)))
        if kind != "ties":  # exact rationals need small integers
            table = RDTable(np.round(table.rate), np.round(table.distortion * 20), table.allowed)
        hull = lower_hull(table)
        for g in range(table.num_groups):
            n = int(hull.size[g])
            got = list(zip(hull.rate[g, :n].tolist(), hull.distortion[g, :n].tolist()))
            assert got == reference_hull(table.rate[g], table.distortion[g], table.mask[g])
            idx = hull.index[g, :n]
            assert table.mask[g, idx].all()
            assert np.array_equal(table.rate[g, idx], hull.rate[g, :n])
            assert np.array_equal(table.distortion[g, idx], hull.distortion[g, :n])
            assert (hull.index[g, n:] == idx[-1]).all()  # padding repeats the last vertex


def test_float_curves_lie_on_or_above_the_hull(make_table: Make) -> None:
    rng = np.random.default_rng(11)
    table = make_table(rng, "float", 300, 12)
    hull = lower_hull(table)
    for g in range(table.num_groups):
        n = int(hull.size[g])
        hr, hd = hull.rate[g, :n], hull.distortion[g, :n]
        assert (np.diff(hr) > 0).all() and (np.diff(hd) < 0).all()
        assert (np.diff(hull.gain[g]) <= 0).all() and (hull.gain[g, : n - 1] > 0).all()
        assert (hull.gain[g, n - 1 :] == 0).all()
        m = table.mask[g]
        r, d = table.rate[g, m], table.distortion[g, m]
        assert hr[0] == r.min() and hd[0] == d[r == r.min()].min()
        assert hd[-1] == d.min() and hr[-1] == r[d == d.min()].min()
        inside = r <= hr[-1]
        below = d[inside] - np.interp(r[inside], hr, hd)
        assert (below >= -1e-9 * max(1.0, float(d.max()))).all()


def test_vectorized_equals_one_group_at_a_time(make_table: Make) -> None:
    rng = np.random.default_rng(12)
    table = make_table(rng, "nonconvex", 50, 7)
    hull = lower_hull(table)
    for g in range(table.num_groups):
        one = lower_hull(RDTable(table.rate[g : g + 1], table.distortion[g : g + 1], table.mask[g : g + 1]))
        n = int(one.size[0])
        assert int(hull.size[g]) == n and np.array_equal(hull.index[g, :n], one.index[0, :n])


def test_choice_at_moves_to_lower_rate_as_the_price_rises() -> None:
    table = RDTable(np.array([[0.0, 1.0, 2.0, 3.0]]), np.array([[10.0, 4.0, 1.0, 0.0]]))
    hull = lower_hull(table)
    assert hull.gain.tolist() == [[6.0, 3.0, 1.0]]
    positions = [int(hull.choice_at(lam)[0]) for lam in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 6.0, 7.0)]
    assert positions == [3, 3, 2, 2, 1, 1, 0, 0]  # a tie (lam equal to a gain) takes the lower rate


def test_single_choice_and_duplicate_points() -> None:
    hull = lower_hull(RDTable(np.array([[3.0]]), np.array([[1.0]])))
    assert hull.size.tolist() == [1] and hull.gain.shape == (1, 0)
    hull = lower_hull(RDTable(np.array([[1.0, 1.0, 2.0, 2.0]]), np.array([[5.0, 5.0, 5.0, 2.0]])))
    assert hull.size.tolist() == [2] and hull.rate[0, :2].tolist() == [1.0, 2.0]
    assert hull.distortion[0, :2].tolist() == [5.0, 2.0]
