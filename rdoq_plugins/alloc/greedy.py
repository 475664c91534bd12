"""Greedy bit allocation: climb the convex hulls by the best distortion decrease per bit.

The baseline of RDOQ-style allocation (Wang et al., "RDO-Q", ECCV 2022, compare the marginal
analysis of Shoham & Gersho, 1988): every group starts at its least-rate allowed choice; then the
hull step (:mod:`.hull`) with the largest distortion decrease per unit rate among those that still
fit is taken, until none fits. A group whose next step does not fit stops there.
"""
from __future__ import annotations

import math
import time

import numpy as np

from rdoq_plugins.alloc.hull import Hull, lower_hull
from rdoq_plugins.alloc.table import Allocation, RDTable, make_allocation
from rdoq_plugins.registry import ALLOCATORS


def climb(hull: Hull, budget: float) -> np.ndarray:
    """``[groups]`` hull positions reached by the greedy climb within ``budget``.

    A max-heap holding each group's next step pops the steps in the order of one global sort by
    (gain descending, group, step), because gains never increase along a hull; so the steps are
    sorted once, the longest prefix that fits is taken at once, and only the rest is walked one
    step at a time (as the heap would), stopping when no remaining step can fit.
    """
    groups, n_steps = hull.gain.shape
    level = np.zeros(groups, dtype=np.int64)
    rem = budget - math.fsum(hull.rate[:, 0].tolist())
    if n_steps == 0:
        return level
    valid = np.arange(n_steps)[None, :] < (hull.size - 1)[:, None]
    grp, step = np.nonzero(valid)
    gain = hull.gain[grp, step]
    d_rate = hull.rate[grp, step + 1] - hull.rate[grp, step]
    order = np.lexsort((step, grp, -gain))
    grp, d_rate = grp[order], d_rate[order]
    fits = np.cumsum(d_rate) <= rem
    p = int(np.argmin(fits)) if not fits.all() else fits.size  # fits is a prefix (d_rate > 0)
    np.add.at(level, grp[:p], 1)
    rem -= math.fsum(d_rate[:p].tolist())
    taken: list[int] = []
    tail_g, tail_r = grp[p:], d_rate[p:]
    if tail_r.size:
        least_after = np.minimum.accumulate(tail_r[::-1])[::-1]  # smallest step from here on
        dead = [False] * groups
        for g, r, least in zip(tail_g.tolist(), tail_r.tolist(), least_after.tolist()):
            if rem < least:
                break
            if dead[g]:
                continue
            if r <= rem:
                level[g] += 1
                rem -= r
                taken.append(g)
            else:
                dead[g] = True
    # Non-integer rates: undo the latest steps if round-off in ``rem`` let the exact total exceed the budget.
    history = grp[:p].tolist() + taken
    rows = np.arange(groups)
    while history and math.fsum(hull.rate[rows, level].tolist()) > budget:
        level[history.pop()] -= 1
    return level


@ALLOCATORS.register("greedy")
def allocate_greedy(table: RDTable, budget: float) -> Allocation:
    """Greedy bit allocation (see the module docstring); never over ``budget``.

    Raises ``ValueError`` when ``budget`` is below ``table.min_rate()``.
    """
    t0 = time.perf_counter()
    budget = table.check_budget(budget)
    hull = lower_hull(table)
    level = climb(hull, budget)
    choice = hull.index[np.arange(table.num_groups), level]
    return make_allocation(table, choice, budget, "greedy", t0)
