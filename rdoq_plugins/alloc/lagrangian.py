"""Lagrangian bit allocation: one rate price for all groups, found by bisection.

RDOQ (Wang et al., "RDO-Q: Extremely Fine-Grained Channel-Wise Quantization via Rate-Distortion
Optimization", ECCV 2022) relaxes the rate budget with a multiplier ``lam``: every group then picks
``argmin_k d[i, k] + lam * r[i, k]`` on its own, and ``lam`` is tuned until the total rate meets the
budget. The minimizers are the vertices of each group's lower convex hull (:mod:`.hull`), and the
total rate only changes where ``lam`` crosses a hull step's slope, so the bisection on ``log lam``
runs over those breakpoints and ends exactly at the critical multiplier. The result is optimal for
the budget it spends (no other allocation of at most that rate has less distortion), but may leave
part of the budget unused; :func:`dual_bound` gives the matching lower bound on the optimum.
"""
from __future__ import annotations

import math
import time

import numpy as np

from rdoq_plugins.alloc.hull import Hull, lower_hull
from rdoq_plugins.alloc.table import Allocation, RDTable, make_allocation
from rdoq_plugins.registry import ALLOCATORS


def dual_bound(table: RDTable, lam: float, budget: float) -> float:
    """The Lagrangian dual ``sum_i min_k (d_ik + lam r_ik) - lam * budget``: a lower bound on the
    least total distortion of any allocation within ``budget``, for every ``lam >= 0``."""
    rate = np.where(table.mask, table.rate, 0.0)
    per_group = np.where(table.mask, table.distortion + lam * rate, np.inf).min(axis=1)
    return math.fsum(per_group.tolist()) - (lam * budget if lam else 0.0)  # 0 * inf budget is 0


def solve_multiplier(hull: Hull, budget: float, tol: float = 0.0) -> tuple[float, np.ndarray, int]:
    """The least ``lam`` whose per-group minimizers fit ``budget`` (ties go to the lower rate).

    Returns ``(lam, hull positions [groups], evaluations)``. ``lam = 0`` when the least-distortion
    allocation fits. ``tol > 0`` stops early once ``budget - rate <= tol * budget`` (a larger
    ``lam`` than the critical one, still feasible). The caller checks that the budget is feasible.
    """
    rows = np.arange(hull.rate.shape[0])

    def total(pos: np.ndarray) -> float:
        return math.fsum(hull.rate[rows, pos].tolist())

    pos = hull.choice_at(0.0)
    if total(pos) <= budget:
        return 0.0, pos, 1
    lams = np.unique(hull.gain[hull.gain > 0])  # ascending; at lams[-1] every group sits at vertex 0
    lo, hi = -1, lams.size - 1  # invariant: lams[hi] fits the budget, lams[lo] (or 0) does not
    best = hull.choice_at(float(lams[hi]))
    evals = 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        pos = hull.choice_at(float(lams[mid]))
        evals += 1
        rate = total(pos)
        if rate <= budget:
            hi, best = mid, pos
            if budget - rate <= tol * budget:
                break
        else:
            lo = mid
    return float(lams[hi]), best, evals


@ALLOCATORS.register("lagrangian")
def allocate_lagrangian(table: RDTable, budget: float, tol: float = 0.0) -> Allocation:
    """Bit allocation by the Lagrangian relaxation (see the module docstring).

    Args:
        table: rates and distortions of every choice.
        budget: the most total rate allowed; below ``table.min_rate()`` raises ``ValueError``.
        tol: relative rate tolerance for stopping the bisection early; 0 finds the critical
            multiplier exactly (at most ``log2(#hull steps) + 2`` evaluations).

    Returns:
        The allocation at the multiplier found (never over the budget), with ``lam`` and the dual
        ``lower_bound``.
    """
    t0 = time.perf_counter()
    budget = table.check_budget(budget)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    hull = lower_hull(table)
    lam, pos, evals = solve_multiplier(hull, budget, tol)
    choice = hull.index[np.arange(table.num_groups), pos]
    return make_allocation(table, choice, budget, "lagrangian", t0, lam=lam,
                           lower_bound=dual_bound(table, lam, budget), stats={"evaluations": float(evals)})
