"""One RDOQ run, framework-agnostic: curves (reusing stored ones), an allocation per target rate,
the additivity check, and applying one allocation (Wang et al., "RDO-Q", ECCV 2022).

The adapters (``mmdet_ext``, ``pcdet_ext``) supply the model, the calibration batches and the
distortion target's ``outputs(model, batch)``; everything else is here.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdoq_plugins.alloc import RDTable, allocate
from rdoq_plugins.config import QuantConfig
from rdoq_plugins.config.rdoq import Estimator, RDOQConfig, Target
from rdoq_plugins.modules.level_quantizer import LevelQuantizer
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.apply import CurveTable, allocated_quantizer, apply_choice, predicted_distortion
from rdoq_plugins.rd.candidates import CandidateGrid
from rdoq_plugins.rd.curve import LayerCurve, TensorKind
from rdoq_plugins.rd.measured import measured_curves
from rdoq_plugins.rd.probe import fp_pass
from rdoq_plugins.rd.second_order import second_order_curves
from rdoq_plugins.rd.spec import CurveSpec
from rdoq_plugins.rd.store import CurveStore
from rdoq_plugins.rd.target import output_distortion

KINDS: dict[Target, tuple[TensorKind, ...]] = {
    Target.WEIGHT: (TensorKind.WEIGHT,),
    Target.ACT: (TensorKind.ACT,),
    Target.JOINT: (TensorKind.WEIGHT, TensorKind.ACT),
    Target.BOTH: (TensorKind.WEIGHT, TensorKind.ACT),
}
Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]


def curve_spec(cfg: RDOQConfig) -> CurveSpec:
    """The curve settings of an ``rdoq`` config section."""
    return CurveSpec(kinds=KINDS[cfg.target], weight_group=cfg.weight_group, act_group=cfg.act_group,
                     weight_grid=CandidateGrid(cfg.weight_bits, cfg.weight_ratios),
                     act_grid=CandidateGrid(cfg.act_bits, cfg.act_ratios),
                     projections=cfg.projections, kappa=cfg.kappa, seed=cfg.seed)


def per_level_input(layer: QuantLayer) -> bool:
    """Whether ``layer`` quantizes its input per pyramid level (:class:`LevelQuantizer`): such inputs
    keep their uniform bits, one step per level, and get no activation curve."""
    return isinstance(layer.input_quantizer, LevelQuantizer)


def rd_layers(layers: Mapping[str, QuantLayer], qcfg: QuantConfig) -> dict[str, QuantLayer]:
    """The layers the allocation covers: quantized layers whose allocated tensors (weights and / or
    inputs) are quantized at the default bit-width. A layer whose override sets other bits for an
    allocated kind (e.g. an 8-bit first conv) keeps them; overriding an observer does not matter.
    With activations allocated, a per-level input (:func:`per_level_input`) keeps its uniform bits;
    the layer stays in for its weights, if they are allocated too."""
    assert qcfg.rdoq is not None
    kinds = KINDS[qcfg.rdoq.target]
    out = {}
    for name, layer in layers.items():
        lq = qcfg.for_layer(name)
        if lq is None:
            continue
        w, a = lq.w_qconfig, lq.a_qconfig
        if TensorKind.WEIGHT in kinds and (layer.weight_quantizer is None or w is None or w.bit != qcfg.w_qconfig.bit):
            continue
        if TensorKind.ACT in kinds and (layer.input_quantizer is None or a is None or a.bit != qcfg.a_qconfig.bit):
            continue
        if kinds == (TensorKind.ACT,) and per_level_input(layer):
            continue
        out[name] = layer
    if not out:
        raise ValueError("rdoq: no quantized layer is left to allocate bits to (all are overridden or FP)")
    return out


def curve_keys(layers: Mapping[str, QuantLayer], target: Target) -> list[tuple[str, TensorKind]]:
    """The (layer, kind) curves an allocation of ``target`` over :func:`rd_layers` needs, kind by kind."""
    return [(n, k) for k in KINDS[target] for n, layer in layers.items()
            if not (k is TensorKind.ACT and per_level_input(layer))]


def compute_curves(
    model: nn.Module,
    layers: Mapping[str, QuantLayer],
    batches: Sequence[Any],
    outputs: Outputs,
    cfg: RDOQConfig,
    store: CurveStore,
    images: Callable[[Any], int] = lambda b: 1,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    reduce_mean: Callable[[Tensor], Tensor] | None = None,
    writer: bool = True,
) -> tuple[dict[tuple[str, TensorKind], LayerCurve], int]:
    """Every curve the config needs, computing only those not in ``store`` (``writer``: this
    process saves them). Returns the curves and how many were computed now."""
    keys = curve_keys(layers, cfg.target)
    missing = store.missing(keys)
    save = store.save if writer else (lambda c: None)
    for kind in dict.fromkeys(k for _, k in missing):  # one pass per kind: each over its own layers
        todo = {n: layers[n] for n, k in missing if k is kind}
        spec = replace(curve_spec(cfg), kinds=(kind,))
        if cfg.estimator is Estimator.SECOND_ORDER:
            for curve in second_order_curves(model, todo, batches, outputs, spec, images, progress,
                                             reduce_mean).values():
                save(curve)
        else:
            measured_curves(model, todo, batches, outputs, spec, images, progress, reduce_mean, on_curve=save)
    return {key: store.load(*key) for key in keys}, len(missing)


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
