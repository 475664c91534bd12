"""Bit allocators of RDOQ: one choice (bit-width) per channel group within a rate budget.

Wang et al., "RDO-Q: Extremely Fine-Grained Channel-Wise Quantization via Rate-Distortion
Optimization", ECCV 2022. Importing this package registers ``"dp"`` (exact), ``"lagrangian"`` and
``"greedy"`` in :data:`rdoq_plugins.registry.ALLOCATORS`.
"""
from __future__ import annotations

from typing import Any

from rdoq_plugins.alloc.dp import allocate_dp
from rdoq_plugins.alloc.greedy import allocate_greedy
from rdoq_plugins.alloc.hull import Hull, lower_hull
from rdoq_plugins.alloc.lagrangian import allocate_lagrangian, dual_bound
from rdoq_plugins.alloc.table import Allocation, RDTable
from rdoq_plugins.registry import ALLOCATORS


def allocate(table: RDTable, budget: float, solver: str = "dp", **kw: Any) -> Allocation:
    """Runs the allocator registered as ``solver`` (an unknown name lists the close matches)."""
    return ALLOCATORS.get(solver)(table, budget, **kw)  # type: ignore[no-any-return]


__all__ = [
    "Allocation",
    "Hull",
    "RDTable",
    "allocate",
    "allocate_dp",
    "allocate_greedy",
    "allocate_lagrangian",
    "dual_bound",
    "lower_hull",
]
