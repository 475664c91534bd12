"""Exact bit allocation: dynamic programming over the rate budget, shrunk by Lagrangian fixing.

RDOQ's allocation (Wang et al., "RDO-Q: Extremely Fine-Grained Channel-Wise Quantization via
Rate-Distortion Optimization", ECCV 2022) is a multiple-choice knapsack: one choice per group, total
rate within the budget, least total distortion. The dense DP solves it exactly in
``O(groups x budget x choices)``, far too slow for 1e5 groups, so first most of the problem is
settled by reduced-cost fixing, a classic integer-programming step (e.g. Nemhauser & Wolsey,
"Integer and Combinatorial Optimization", 1988):

1. Solve the Lagrangian dual (:mod:`.lagrangian`): multiplier ``lam >= 0`` and lower bound
   ``LB = sum_i m_i - lam * B`` with ``m_i = min_k (d_ik + lam r_ik)``.
2. Take the better of the Lagrangian and the greedy allocation as a feasible upper bound ``UB``.
3. Remove every choice whose reduced cost ``rc_ik = d_ik + lam r_ik - m_i`` exceeds ``UB - LB``.
   Proof that no optimal allocation is lost: for any allocation ``x`` (choice ``k_i`` per group)
   within the budget, since ``lam >= 0`` and ``sum_i r_ik_i <= B``,
   ``D(x) = sum_i (d_ik_i + lam r_ik_i) - lam sum_i r_ik_i >= sum_i (m_i + rc_ik_i) - lam B
   = LB + sum_i rc_ik_i >= LB + rc_jk_j`` for every group ``j`` (all ``rc >= 0``). So if
   ``rc_jk > UB - LB``, every allocation using choice ``k`` in group ``j`` has ``D(x) > UB >= OPT``
   and is not optimal. The test keeps a margin of ``1e-12`` of the magnitudes involved, far above
   float64 round-off (the sums are exactly rounded), so ties are never removed. The ``UB``
   allocation itself always survives (its every ``rc`` is at most ``UB - LB`` by the same chain).
4. Within a group, drop choices dominated by another kept choice (no more rate, no more
   distortion); this keeps at least one optimal allocation. Groups left with one choice are fixed.
5. Run the dense DP on the other groups only, with the budget less the fixed groups' rates and
   each group's rates shifted down by its least kept rate.

The Lagrangian and greedy ``UB`` often leave part of the budget unused, so ``UB - LB`` can keep
thousands of groups free while the true gap ``OPT - LB`` is tiny. Hence steps 3-5 first run on a
small *core*: the choices with reduced cost at most ``tau`` (``tau`` set so that about 256 groups
have a second choice). The core optimum is feasible, so it lowers ``UB``; once
``UB - LB <= tau``, every optimal allocation lies inside the core (by the proof of step 3), so the
core optimum is the optimum. Otherwise ``tau`` grows 8x (at most to ``UB - LB``, where the round is
plain fixing and always certifies). On 1e5 groups this takes one round of a few hundred groups.

Rates are handled as integers in units of ``rate_unit``: by default the gcd of all allowed rates
(which must then be integers, as ``bits x elements`` is); otherwise pass ``rate_unit`` and every
rate is rounded UP to a multiple of it (the budget DOWN), so the result is exact for the rounded
rates and within the budget for the true ones. Worst case: when many groups have nearly equal
reduced costs within the duality gap (e.g. many identical curves whose tied hull steps cannot fill
the budget exactly), few groups are fixed and the DP approaches its dense cost,
``O(free groups x budget units x choices)``; ``memory_mb`` bounds its memory (the argmin table is
kept in chunks with value checkpoints when it does not fit whole) and a clear ``MemoryError`` says
what to change.
"""
from __future__ import annotations

import math
import time

import numpy as np

from rdoq_plugins.alloc.greedy import climb
from rdoq_plugins.alloc.hull import lower_hull
from rdoq_plugins.alloc.lagrangian import solve_multiplier
from rdoq_plugins.alloc.table import Allocation, RDTable, make_allocation
from rdoq_plugins.registry import ALLOCATORS

_SNAP = 1e-9  # relative distance to an integer under which rate / unit counts as that integer
_FIX_MARGIN = 1e-12  # relative margin of the fixing test (float64 round-off is ~1e-16)
_CORE = 256  # groups in the first core round


def rate_units(table: RDTable, rate_unit: float | None = None) -> tuple[np.ndarray, float]:
    """``(rates as int64 multiples of the unit, unit)``; 0 at disallowed choices.

    Without ``rate_unit`` the allowed rates must be integers and the unit is their gcd (1 if all are
    0). With it, every rate is rounded up to a multiple of ``rate_unit``.
    """
    r = np.where(table.mask, table.rate, 0.0)
    if rate_unit is None:
        if (r != np.round(r)).any() or r.max() >= 2.0**53:
            raise ValueError("allocate_dp: rates are not integers; pass rate_unit=... (rates are rounded up "
                             "to multiples of it), or use solver 'lagrangian' or 'greedy'")
        ri = r.astype(np.int64)
        unit = int(np.gcd.reduce(ri.ravel())) or 1
        return ri // unit, float(unit)
    if not (math.isfinite(rate_unit) and rate_unit > 0):
        raise ValueError(f"rate_unit must be a positive number, got {rate_unit!r}")
    q = r / rate_unit
    if q.max() >= 2.0**53:
        raise ValueError(f"rate_unit {rate_unit:g} is too fine for rates up to {r.max():g}")
    near = np.round(q)
    units = np.where(np.abs(q - near) <= _SNAP * np.maximum(q, 1.0), near, np.ceil(q))
    return units.astype(np.int64), float(rate_unit)


def _budget_units(budget: float, unit: float) -> int:
    q = budget / unit
    near = round(q)
    return int(near if abs(q - near) <= _SNAP * max(q, 1.0) else math.floor(q))


def _row(prev: np.ndarray, w_prev: int, rates: np.ndarray, dists: np.ndarray, w: int,
         out: np.ndarray, arg: np.ndarray | None) -> None:
    """One DP row: ``out[b] = min_j prev[b - rates[j]] + dists[j]`` for ``b < w``.

    ``prev`` holds its values for ``b < w_prev``; beyond that it is constant (every group so far
    can take its largest rate), so it is extended with its last value. ``rates`` is ascending with
    ``rates[0] == 0``; ``arg`` receives the position of the minimizing choice.
    """
    if w > w_prev:
        prev[w_prev:w] = prev[w_prev - 1]
    np.add(prev[:w], dists[0], out=out[:w])
    if arg is not None:
        arg[:w] = 0
    for j in range(1, rates.size):
        r = int(rates[j])
        if r >= w:
            break
        cand = prev[: w - r] + dists[j]
        seg = out[r:w]
        better = cand < seg
        np.copyto(seg, cand, where=better)
        if arg is not None:
            np.copyto(arg[r:w], j, where=better)


def knapsack(rates: list[np.ndarray], dists: list[np.ndarray], cap: int, memory_bytes: float,
             chunk: int | None = None) -> np.ndarray:
    """Exact multiple-choice knapsack by dense DP: per group, the position of its choice.

    ``rates[g]`` ascending int64 with ``rates[g][0] == 0``; total rate at most ``cap``. The argmin
    table (uint8) is kept whole if it fits ``memory_bytes``; otherwise the value vector is saved
    every ``chunk ~ sqrt(8 n)`` groups and each chunk's argmins are recomputed during the backtrack
    (``chunk`` forces a chunk size, for tests).
    """
    n = len(rates)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width_cap = cap + 1
    widths = np.minimum(np.cumsum([int(r[-1]) for r in rates]), cap) + 1  # row g's width
    choices = max(r.size for r in rates)
    arg_dtype = np.uint8 if choices <= 256 else np.uint16
    item = np.dtype(arg_dtype).itemsize
    work = 4 * 8 * width_cap  # two value buffers and the temporaries of a row
    whole = int(widths.sum()) * item
    if chunk is not None:
        chunk = max(1, chunk)
    elif whole + work <= memory_bytes:
        chunk = n
    else:
        chunk = max(1, math.ceil(math.sqrt(8 * n / item)))
        need = math.ceil(n / chunk) * 8 * width_cap + chunk * width_cap * item + work
        if need > memory_bytes:
            raise MemoryError(
                f"allocate_dp: the DP over {n} unfixed groups x {width_cap} budget units needs about "
                f"{need / 2**20:.0f} MB (memory_mb allows {memory_bytes / 2**20:.0f}); raise memory_mb, "
                f"pass a coarser rate_unit, or use solver 'lagrangian' or 'greedy'"
            )
    starts = list(range(0, n, chunk))
    prev, out = np.zeros(width_cap), np.empty(width_cap)
    saved: list[np.ndarray] = []
    w_prev = 1
    if len(starts) > 1:  # forward pass saving the value vector at each chunk start
        for s in starts:
            saved.append(prev[:w_prev].copy())
            for g in range(s, min(s + chunk, n)):
                w = int(widths[g])
                _row(prev, w_prev, rates[g], dists[g], w, out, None)
                prev, out, w_prev = out, prev, w
    pos = np.zeros(n, dtype=np.int64)
    b = cap
    for c in reversed(range(len(starts))):
        s, e = starts[c], min(starts[c] + chunk, n)
        if saved:
            w_prev = saved[c].size
            prev[:w_prev] = saved[c]
        else:
            w_prev = 1
            prev[:1] = 0.0
        args = []
        for g in range(s, e):
            w = int(widths[g])
            arg = np.empty(w, dtype=arg_dtype)
            _row(prev, w_prev, rates[g], dists[g], w, out, arg)
            args.append(arg)
            prev, out, w_prev = out, prev, w
        for g in reversed(range(s, e)):
            b = min(b, int(widths[g]) - 1)
            j = int(args[g - s][b])
            pos[g] = j
            b -= int(rates[g][j])
    return pos


@ALLOCATORS.register("dp")
def allocate_dp(
    table: RDTable,
    budget: float,
    *,
    memory_mb: float = 2048,
    rate_unit: float | None = None,
    fix: bool = True,
) -> Allocation:
    """The exact least-distortion allocation within ``budget`` (see the module docstring).

    Args:
        table: rates and distortions of every choice.
        budget: the most total rate allowed; below ``table.min_rate()`` raises ``ValueError``.
        memory_mb: bound on the DP's argmin table and value vectors; ``MemoryError`` beyond it.
        rate_unit: rates are rounded UP to multiples of it (default: the gcd of the rates, which
            must then be integers).
        fix: apply Lagrangian reduced-cost fixing first (off: plain dense DP, for testing).

    Returns:
        The allocation, with ``lam``, ``lower_bound`` (the dual bound, for the unit-rounded rates)
        and ``stats``: ``unit``, ``gap_initial`` (Lagrangian/greedy vs the bound), ``rounds`` (core
        rounds), ``groups_fixed`` / ``groups_dp`` / ``dp_width`` (of the last DP), ``gap``.
    """
    t0 = time.perf_counter()
    budget = table.check_budget(budget)
    groups = table.num_groups
    rows = np.arange(groups)
    best = table.min_distortion_choice()
    if table.evaluate(best)[0] <= budget:  # the budget does not bind
        return make_allocation(table, best, budget, "dp", t0, lam=0.0, lower_bound=table.evaluate(best)[1],
                               stats={"groups_fixed": float(groups), "groups_dp": 0.0, "dp_width": 0.0})
    units, unit = rate_units(table, rate_unit)
    cap = _budget_units(budget, unit)
    problem = RDTable(units.astype(np.float64), table.distortion, table.allowed)
    if problem.min_rate() > cap:
        raise ValueError(f"budget {budget:g} is infeasible once rates are rounded up to multiples of "
                         f"rate_unit {unit:g} (minimum {problem.min_rate() * unit:g}); "
                         "pass a finer rate_unit")
    cap = min(cap, int(problem.max_rate()))
    mask = problem.mask
    memory_bytes = memory_mb * 2**20
    stats: dict[str, float] = {"unit": unit}
    if not fix:
        choice = _solve_reduced(problem, units, mask, cap, memory_bytes, stats)
        assert choice is not None  # the unit problem is feasible, and nothing was fixed
        return make_allocation(table, choice, budget, "dp", t0, stats=stats)

    hull = lower_hull(problem)
    lam, pos, _ = solve_multiplier(hull, float(cap))
    candidates = [hull.index[rows, pos], hull.index[rows, climb(hull, float(cap))]]
    upper, best_i = min((problem.evaluate(c)[1], i) for i, c in enumerate(candidates))
    upper_choice = candidates[best_i]
    score = np.where(mask, problem.distortion + lam * problem.rate, np.inf)
    least = score.min(axis=1)
    lower = math.fsum(least.tolist()) - lam * cap
    reduced = score - least[:, None]  # +inf at disallowed choices
    margin = _FIX_MARGIN * (math.fsum(np.abs(least).tolist()) + lam * cap + abs(upper)) + 1e-300
    stats.update(gap_initial=upper - lower, rounds=0.0)
    # Core rounds: solve the problem restricted to choices with reduced cost <= tau exactly. That
    # optimum is feasible, so it may lower ``upper``; once ``upper - lower + margin <= tau``, every
    # choice of every optimal allocation lies in the core (proof above), so the core optimum is the
    # optimum. tau starts at the ``_CORE`` smallest second-best reduced costs and grows 8x a round,
    # up to ``upper - lower + margin``, where the round is the one-shot fixing and always certifies.
    second = np.sort(np.partition(reduced, 1, axis=1)[:, 1])
    k, last_tau = _CORE, -math.inf
    while True:
        gap = upper - lower
        if gap <= margin:  # the bounds meet: optimal up to round-off
            break
        tau = min(gap + margin, float(second[k]) if k < groups else math.inf)
        if tau <= last_tau:  # ties in ``second``: the same core again
            k *= 8
            continue
        last_tau = tau
        stats["rounds"] += 1
        choice = _solve_reduced(problem, units, mask & (reduced <= tau), cap, memory_bytes, stats)
        if choice is not None:
            dist = problem.evaluate(choice)[1]
            if dist < upper:
                upper, upper_choice = dist, choice
        if upper - lower + margin <= tau:
            if choice is None:  # cannot happen in exact arithmetic; solve without fixing
                choice = _solve_reduced(problem, units, mask, cap, memory_bytes, stats)
                assert choice is not None
                upper_choice = choice
            break
        k *= 8
    stats["gap"] = upper - lower
    return make_allocation(table, upper_choice, budget, "dp", t0, lam=lam, lower_bound=lower, stats=stats)


def _solve_reduced(problem: RDTable, units: np.ndarray, keep: np.ndarray, cap: int, memory_bytes: float,
                   stats: dict[str, float]) -> np.ndarray | None:
    """Exact optimum over the ``keep`` choices, or None if they cannot fit ``cap``.

    Drops dominated choices, fixes groups left with one choice and runs the DP on the rest.
    """
    choice = np.argmax(keep, axis=1).astype(np.int64)  # the kept choice of single-choice groups
    multi = np.flatnonzero(keep.sum(axis=1) > 1)
    k_m = keep[multi]
    u_m = units[multi]
    d_m = np.where(k_m, problem.distortion[multi], np.inf)
    order = np.lexsort((d_m, u_m, ~k_m), axis=1)  # kept first, by rate then distortion
    u_s, d_s, k_s = (np.take_along_axis(a, order, axis=1) for a in (u_m, d_m, k_m))
    seen = np.minimum.accumulate(np.where(k_s, d_s, np.inf), axis=1)
    before = np.concatenate([np.full((multi.size, 1), np.inf), seen[:, :-1]], axis=1)
    k_s &= d_s < before  # strictly less distortion than every kept choice of no more rate
    compact = np.argsort(~k_s, axis=1, kind="stable")  # survivors first, still by rate
    order, u_s, d_s = (np.take_along_axis(a, compact, axis=1) for a in (order, u_s, d_s))
    count = k_s.sum(axis=1)
    choice[multi] = order[:, 0]  # least kept rate (final if it is the only survivor)
    free = np.flatnonzero(count > 1)
    rest = cap - int(units[np.arange(problem.num_groups), choice].sum())
    stats.update(groups_fixed=float(problem.num_groups - free.size), groups_dp=float(free.size))
    if rest < 0:
        return None
    rates = [u_s[g, : count[g]] - u_s[g, 0] for g in free.tolist()]
    dists = [d_s[g, : count[g]] for g in free.tolist()]
    rest = min(rest, sum(int(r[-1]) for r in rates))
    stats["dp_width"] = float(rest + 1) if free.size else 0.0
    pos = knapsack(rates, dists, rest, memory_bytes)
    choice[multi[free]] = order[free, pos]
    return choice
