"""What an allocation run leaves in ``rd_alloc/``: one JSON per target rate (with the per-group
choices), the summary, and the plots (RDOQ, Wang et al., ECCV 2022: curves, then bits per group)."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.files import atomic_write_text
from rdoq_plugins.rd.apply import CurveTable
from rdoq_plugins.rd.plots import plot_bit_heatmap, plot_curves
from rdoq_plugins.rd.rates import RateAllocation, additivity

logger = logging.getLogger(__name__)


def alloc_summary(cfg: RDOQConfig, table: CurveTable, allocs: Sequence[RateAllocation], curves: Any) -> dict[str, Any]:
    """The JSON-ready summary of the allocations of every target rate (``curves``: where they came from)."""
    return {"target": cfg.target.value, "solver": cfg.solver, "estimator": cfg.estimator.value,
            "apply_rate": cfg.apply_rate, "elements": table.elements, "groups": len(table.rate),
            "rates": [a.summary() for a in allocs], "additivity": additivity(allocs), "curves": curves}


def write_allocations(out: Path, table: CurveTable, allocs: Sequence[RateAllocation],
                      optional_plots: bool = False) -> None:
    """``out/rate_<r>.json`` per allocation, ``rd_curves.png`` and ``bits_heatmap.png``; with
    ``optional_plots``, a missing matplotlib only logs a warning."""
    for a in allocs:
        atomic_write_text(json.dumps({**a.summary(), "choice": a.choice.tolist()}) + "\n",
                          out / f"rate_{a.target_rate:g}.json")
    try:
        plot_curves(table.curves, out / "rd_curves.png")
        plot_bit_heatmap(table, {a.target_rate: a.choice for a in allocs}, out / "bits_heatmap.png")
    except ImportError as err:
        if not optional_plots:
            raise
        logger.warning("no plots (%s)", err)
