"""Lower convex hull of every group's rate-distortion points.

The Lagrangian relaxation of RDOQ's bit allocation (Wang et al., "RDO-Q", ECCV 2022) lets every
group minimize ``d + lam * r`` on its own; for ``lam >= 0`` the minimizers are exactly the vertices
of the lower-left convex hull of the group's (rate, distortion) points, from the least-rate point to
the least-distortion point. The greedy allocator climbs the same hull one step at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdoq_plugins.alloc.table import RDTable


@dataclass(frozen=True, eq=False)
class Hull:
    """The hull vertices of every group, by increasing rate; rows are padded by repeating the last vertex.

    Attributes:
        index: ``[groups, H]`` int64, the table choice of each vertex.
        rate, distortion: ``[groups, H]`` float64 of each vertex (rate strictly increasing and
            distortion strictly decreasing along the first ``size`` entries).
        size: ``[groups]`` int64, the number of vertices of each group (>= 1).
        gain: ``[groups, H - 1]`` float64, distortion decrease per unit rate of the step from vertex
            ``j`` to ``j + 1``; positive and non-increasing along a row, 0 for padding steps.
    """

    index: np.ndarray
    rate: np.ndarray
    distortion: np.ndarray
    size: np.ndarray
    gain: np.ndarray

    def choice_at(self, lam: float) -> np.ndarray:
        """``[groups]`` vertex position minimizing ``d + lam * r``; ties go to the lower rate.

        The position is the number of steps whose gain exceeds ``lam``; this reads the same gains
        as the breakpoints, so the rate is exactly monotone in ``lam`` despite round-off.
        """
        return (self.gain > lam).sum(axis=1).astype(np.int64)  # type: ignore[no-any-return]


def lower_hull(table: RDTable) -> Hull:
    """Vertices of the lower-left convex hull of every group's allowed (rate, distortion) points.

    Gift wrapping, vectorized over groups: from the least-rate point (least distortion among equal
    rates), repeatedly step to the point of higher rate and lower distortion with the steepest
    descent; among equally steep points the nearest is taken, so collinear points stay vertices.
    Costs ``O(groups x choices^2)``; ends at the least-distortion point (least rate among equals).
    """
    rate, dist = table.masked_rate(), table.masked_distortion()
    groups, choices = rate.shape
    rows = np.arange(groups)
    cur = table.min_rate_choice()
    verts = [cur]
    active = np.ones(groups, dtype=bool)
    for _ in range(choices - 1):
        r0, d0 = rate[rows, cur][:, None], dist[rows, cur][:, None]
        ok = (rate > r0) & (dist < d0) & active[:, None]  # inf (disallowed) rates fail dist < d0
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(ok, (dist - d0) / np.where(ok, rate - r0, 1.0), np.inf)
        best = slope.min(axis=1)
        active = np.isfinite(best)
        if not active.any():
            break
        steepest = ok & (slope == best[:, None])
        nxt = np.argmin(np.where(steepest, rate, np.inf), axis=1)
        cur = np.where(active, nxt, cur)
        verts.append(cur)
    index = np.stack(verts, axis=1).astype(np.int64)
    h_rate, h_dist = rate[rows[:, None], index], dist[rows[:, None], index]
    size = 1 + (np.diff(index, axis=1) != 0).sum(axis=1) if index.shape[1] > 1 else np.ones(groups, np.int64)
    d_rate = np.diff(h_rate, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(d_rate > 0, -np.diff(h_dist, axis=1) / np.where(d_rate > 0, d_rate, 1.0), 0.0)
    # Exact arithmetic makes the gains non-increasing; clip round-off so that they are.
    gain = np.minimum.accumulate(gain, axis=1) if gain.shape[1] else gain
    return Hull(index=index, rate=h_rate, distortion=h_dist, size=size.astype(np.int64), gain=gain)
