"""One bit allocation per target rate over the RD table, the additivity check (predicted vs
measured output distortion) and their summaries (Wang et al., "RDO-Q", ECCV 2022)."""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rdoq_plugins.alloc import RDTable, allocate
from rdoq_plugins.config.rdoq import RDOQConfig, Target
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.apply import CurveTable, allocated_quantizer, apply_choice, predicted_distortion
from rdoq_plugins.rd.curve import TensorKind
from rdoq_plugins.rd.layers import Outputs
from rdoq_plugins.rd.probe import fp_pass
from rdoq_plugins.rd.target import output_distortion


@dataclass
class RateAllocation:
    """The allocation for one target rate."""

    target_rate: float
    avg_bits: float
    predicted: float
    solver: str
    time_s: float
    choice: np.ndarray
    layer_bits: dict[str, float] = field(default_factory=dict)
    measured: float | None = None

    kind_bits: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no per-group choices)."""
        return {"target_rate": self.target_rate, "avg_bits": self.avg_bits, "kind_bits": self.kind_bits, "predicted_distortion": self.predicted,
                "measured_distortion": self.measured, "solver": self.solver, "solver_time_s": self.time_s,
                "layer_bits": self.layer_bits}


def rate_unit(rate: np.ndarray, allowed: np.ndarray, budget: float, resolution: float = 2.0**20) -> float | None:
    """``None`` (the exact gcd) unless that would make the DP wider than ``resolution`` steps."""
    rates = rate[allowed]
    gcd = int(np.gcd.reduce(rates[rates > 0].astype(np.int64))) if (rates > 0).any() else 1
    return None if budget / max(gcd, 1) <= resolution else float(math.ceil(budget / resolution))


def budget_rows(table: CurveTable, target: Target) -> list[tuple[np.ndarray, bool]]:
    """The table's rows of each budget, with whether that budget is ``act_rate``'s: one budget over
    every row, or with ``target: both`` one for the weight rows and one for the input rows."""
    if target is not Target.BOTH:
        return [(np.arange(len(table.rate)), False)]
    acts = np.concatenate([np.full(c.num_groups, c.kind is TensorKind.ACT) for c in table.curves])
    return [(rows, at_act_rate) for rows, at_act_rate in ((np.flatnonzero(~acts), False), (np.flatnonzero(acts), True))
            if rows.size]


def allocate_rates(table: CurveTable, cfg: RDOQConfig, solver: str | None = None,
                   rates: Sequence[float] | None = None) -> list[RateAllocation]:
    """One allocation per target rate (average bits per allocated element). With ``target: both``
    the weights get the target rate and the activations ``act_rate``, each within its own budget;
    ``avg_bits`` is then the weights' average."""
    solver = solver or cfg.solver
    elements = np.concatenate([c.whole_elements().numpy() for c in table.curves])
    budgets = [(rows, at_act_rate, RDTable(table.rate[rows], table.distortion[rows], table.allowed[rows]),
                float(elements[rows].sum())) for rows, at_act_rate in budget_rows(table, cfg.target)]
    out = []
    for r in rates if rates is not None else cfg.target_rates:
        choice = np.zeros(len(table.rate), dtype=np.int64)
        elapsed = 0.0
        for rows, at_act_rate, rd, count in budgets:
            budget = (cfg.act_rate if at_act_rate and cfg.act_rate is not None else r) * count
            kw = {"rate_unit": rate_unit(rd.rate, rd.allowed, budget)} if solver == "dp" else {}
            start = time.perf_counter()
            alloc = allocate(rd, budget, solver, **kw)
            elapsed += time.perf_counter() - start
            choice[rows] = alloc.choice
        kinds = kind_averages(table, choice)
        avg = kinds["weight"] if cfg.target is Target.BOTH else kinds["joint"]
        out.append(RateAllocation(float(r), avg, predicted_distortion(table, choice), solver, elapsed, choice,
                                  kind_bits=kinds))
    return out


@torch.no_grad()
def measure_allocations(model: nn.Module, layers: Mapping[str, QuantLayer], table: CurveTable,
                        allocs: Sequence[RateAllocation], batches: Sequence[Any], outputs: Outputs) -> None:
    """The additivity check: the measured output distortion of each allocation with only the
    allocated quantizers on (every other layer FP), beside the sum of the predicted per-group
    distortions."""
    with fp_pass(model):
        fp = [[y.detach().clone() for y in outputs(model, b)] for b in batches]
        allocated = [allocated_quantizer(layers[c.layer], c.kind, c.layer) for c in table.curves]
        for a in allocs:
            apply_choice(layers, table, a.choice)
            for q in allocated:
                q.enable_fake_quant(True)
            a.measured = sum(output_distortion(f, outputs(model, b)) for f, b in zip(fp, batches)) / len(batches)
            for q in allocated:
                q.enable_fake_quant(False)


def kind_averages(table: CurveTable, choice: np.ndarray) -> dict[str, float]:
    """Element-weighted average bits of the allocated weights, activations and both (``joint``)."""
    sums: dict[str, list[float]] = {}
    for c, start, end in zip(table.curves, table.offsets[:-1], table.offsets[1:]):
        bits = np.asarray(c.grid.bits, dtype=np.float64)[choice[start:end]]
        elems = c.whole_elements().numpy()
        for key in (c.kind.value, "joint"):
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += float((bits * elems).sum())
            acc[1] += float(elems.sum())
    return {k: v[0] / v[1] for k, v in sums.items()}


def additivity(allocs: Sequence[RateAllocation]) -> dict[str, Any]:
    """Predicted vs measured distortion over the target rates, and their Pearson correlation."""
    pairs = [(a.target_rate, a.predicted, a.measured) for a in allocs if a.measured is not None]
    corr = None
    if len(pairs) >= 2:
        p = np.array([x[1] for x in pairs])
        m = np.array([x[2] for x in pairs])
        if p.std() > 0 and m.std() > 0:
            corr = float(np.corrcoef(p, m)[0, 1])
    return {"rates": [x[0] for x in pairs], "predicted": [x[1] for x in pairs], "measured": [x[2] for x in pairs],
            "pearson": corr}


def format_alloc_table(summary: dict[str, Any]) -> str:
    """The allocation summary of the dp_alloc tools as a small text table, with the correlation."""
    lines = [f"\n{'target':>7}{'avg bits':>10}{'predicted D':>14}{'measured D':>13}{'solver s':>10}"]
    for r in summary["rates"]:
        measured = f"{r['measured_distortion']:.4g}" if r["measured_distortion"] is not None else "-"
        lines.append(f"{r['target_rate']:>7g}{r['avg_bits']:>10.3f}{r['predicted_distortion']:>14.4g}{measured:>13}"
                     f"{r['solver_time_s']:>10.3f}")
    corr = summary["additivity"]["pearson"]
    lines.append(f"additivity: Pearson r = {corr:.3f}" if corr is not None else "additivity: not measured")
    return "\n".join(lines)
