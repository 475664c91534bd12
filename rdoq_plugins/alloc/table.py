"""Rate-distortion tables and allocations: the input and output of every bit allocator.

RDOQ (Zhe Wang, Jie Lin, Xue Geng, Mohamed M. Sabry Aly, Vijay Chandrasekhar, "RDO-Q: Extremely
Fine-Grained Channel-Wise Quantization via Rate-Distortion Optimization", ECCV 2022) gives every
channel group a list of choices (bit-widths, each with its best step size), each with a rate
(bits x elements) and a distortion, and picks one choice per group so that the total rate fits a
budget and the total distortion is minimal: a multiple-choice knapsack.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class RDTable:
    """Rate and distortion of every choice of every group.

    Attributes:
        rate: ``[groups, choices]`` float64, non-negative (bits x elements, usually integers).
        distortion: ``[groups, choices]`` float64, non-negative.
        allowed: ``[groups, choices]`` bool, or None for all allowed. Every group needs at least one
            allowed choice. Disallowed entries are never read, so they may hold ``inf`` or ``nan``.

    Arrays are converted to float64 / bool on construction; invalid input raises ``ValueError``.
    """

    rate: np.ndarray
    distortion: np.ndarray
    allowed: np.ndarray | None = None

    def __post_init__(self) -> None:
        rate = np.array(self.rate, dtype=np.float64)
        dist = np.array(self.distortion, dtype=np.float64)
        if rate.ndim != 2:
            raise ValueError(f"RDTable.rate must be 2-D [groups, choices], got shape {rate.shape}")
        if dist.shape != rate.shape:
            raise ValueError(f"RDTable.distortion has shape {dist.shape}, rate has {rate.shape}; "
                             "they must match")
        if rate.shape[0] < 1 or rate.shape[1] < 1:
            raise ValueError(f"RDTable needs at least one group and one choice, got shape {rate.shape}")
        if self.allowed is None:
            allowed = None
            mask = np.ones(rate.shape, dtype=bool)
        else:
            allowed = np.asarray(self.allowed)
            if allowed.dtype != np.bool_:
                raise ValueError(f"RDTable.allowed must be a bool array, got dtype {allowed.dtype}")
            if allowed.shape != rate.shape:
                raise ValueError(f"RDTable.allowed has shape {allowed.shape}, rate has {rate.shape}; "
                                 "they must match")
            allowed = allowed.copy()
            mask = allowed
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:
            raise ValueError(f"RDTable: group(s) {empty[:10].tolist()} have no allowed choice")
        for name, arr in (("rate", rate), ("distortion", dist)):
            vals = arr[mask]
            bad = ~np.isfinite(vals)
            if bad.any():
                g, k = np.argwhere(mask)[np.flatnonzero(bad)[0]]
                raise ValueError(f"RDTable.{name} must be finite where allowed; "
                                 f"group {g} choice {k} is {arr[g, k]}")
            if (vals < 0).any():
                g, k = np.argwhere(mask)[np.flatnonzero(vals < 0)[0]]
                raise ValueError(f"RDTable.{name} must be >= 0; group {g} choice {k} is {arr[g, k]}")
        rate.flags.writeable = False
        dist.flags.writeable = False
        mask.flags.writeable = False
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "distortion", dist)
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "_mask", mask)

    @property
    def num_groups(self) -> int:
        return int(self.rate.shape[0])

    @property
    def num_choices(self) -> int:
        return int(self.rate.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """``[groups, choices]`` bool: the allowed choices (all True when ``allowed`` is None)."""
        return self._mask  # type: ignore[attr-defined,no-any-return]

    def masked_rate(self) -> np.ndarray:
        """``rate`` with ``+inf`` at disallowed choices."""
        return np.where(self.mask, self.rate, np.inf)

    def masked_distortion(self) -> np.ndarray:
        """``distortion`` with ``+inf`` at disallowed choices."""
        return np.where(self.mask, self.distortion, np.inf)

    def min_rate_choice(self) -> np.ndarray:
        """``[groups]``: the allowed choice of least rate (least distortion among equal rates)."""
        return _lexmin(self.masked_rate(), self.masked_distortion())

    def min_distortion_choice(self) -> np.ndarray:
        """``[groups]``: the allowed choice of least distortion (least rate among equal distortions)."""
        return _lexmin(self.masked_distortion(), self.masked_rate())

    def min_rate(self) -> float:
        """The least total rate of any allocation: every budget below it is infeasible."""
        return self.evaluate(self.min_rate_choice())[0]

    def saturation_rate(self) -> float:
        """The total rate of the least-distortion allocation: any budget at or above it is not binding."""
        return self.evaluate(self.min_distortion_choice())[0]

    def max_rate(self) -> float:
        """The largest total rate of any allocation (every group at its largest allowed rate)."""
        return math.fsum(np.where(self.mask, self.rate, -np.inf).max(axis=1).tolist())

    def check_budget(self, budget: float) -> float:
        """Returns ``budget`` as a float.

        Raises ``TypeError`` if it is not a number, ``ValueError`` if it is nan or below ``min_rate()``.
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
            raise TypeError(f"budget must be a number, got {budget!r}")
        b = float(budget)
        if math.isnan(b):
            raise ValueError("budget is nan")
        lo = self.min_rate()
        if b < lo:
            raise ValueError(
                f"budget {b:g} is infeasible: the minimum achievable total rate is {lo:g} "
                f"(every group at its smallest allowed rate)"
            )
        return b

    def evaluate(self, choice: np.ndarray) -> tuple[float, float]:
        """``(total rate, total distortion)`` of one choice per group (exactly rounded sums)."""
        c = np.asarray(choice)
        if c.shape != (self.num_groups,) or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"choice must be an integer array of shape ({self.num_groups},), "
                             f"got {c.dtype} {c.shape}")
        if ((c < 0) | (c >= self.num_choices)).any():
            raise ValueError(f"choice indices must lie in [0, {self.num_choices})")
        rows = np.arange(self.num_groups)
        if not self.mask[rows, c].all():
            bad = int(np.flatnonzero(~self.mask[rows, c])[0])
            raise ValueError(f"choice {int(c[bad])} of group {bad} is not allowed")
        return math.fsum(self.rate[rows, c].tolist()), math.fsum(self.distortion[rows, c].tolist())


def _lexmin(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Per row, the index minimizing ``primary``, ties broken by ``secondary`` (then by index)."""
    low = primary == primary.min(axis=1, keepdims=True)
    return np.argmin(np.where(low, secondary, np.inf), axis=1).astype(np.int64)  # type: ignore[no-any-return]


@dataclass(frozen=True, eq=False)
class Allocation:
    """One choice per group and what it costs.

    Attributes:
        choice: ``[groups]`` int64 index into the table's choices.
        rate: total rate of ``choice`` (<= ``budget``).
        distortion: total distortion of ``choice``.
        budget: the budget it was solved for.
        solver: the allocator's registry name (``"dp"``, ``"lagrangian"``, ``"greedy"``).
        time_s: wall time of the solve.
        lam: the Lagrange multiplier (rate price) the solver used, if any.
        lower_bound: a lower bound on the optimal distortion (the Lagrangian dual), if known.
        stats: solver-specific figures (e.g. how many groups the exact DP fixed).
    """

    choice: np.ndarray
    rate: float
    distortion: float
    budget: float
    solver: str
    time_s: float
    lam: float | None = None
    lower_bound: float | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """``distortion - lower_bound``: how far from optimal the allocation can be at most."""
        return None if self.lower_bound is None else self.distortion - self.lower_bound


def make_allocation(
    table: RDTable, choice: np.ndarray, budget: float, solver: str, t0: float, **extra: object
) -> Allocation:
    """Builds an :class:`Allocation`, evaluating ``choice`` on ``table``; ``t0`` is a perf_counter start."""
    c = np.asarray(choice, dtype=np.int64)
    rate, dist = table.evaluate(c)
    return Allocation(choice=c, rate=rate, distortion=dist, budget=float(budget), solver=solver,
                      time_s=time.perf_counter() - t0, **extra)  # type: ignore[arg-type]
