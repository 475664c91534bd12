"""Measured (first-order) RD curves: quantize one group alone and measure the output distortion.

This is RDOQ's reference estimator (Wang et al., RDO-Q, ECCV 2022): for every layer, group and
(bits, ratio) candidate, the calibration set runs once with only that group quantized. It is exact
for the chosen target but costs one pass per candidate; :mod:`rdoq_plugins.rd.second_order` prices
all candidates from a few backward passes instead.

Candidates are batched: the calibration batches' FP outputs are computed once, and a layer's
quantized weight candidates are prepared once per layer, so a candidate costs one forward pass per
batch and nothing else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.granularity import unit_index
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.candidates import group_ranges, quantize_groups
from rdoq_plugins.rd.curve import LayerCurve, TensorKind
from rdoq_plugins.rd.probe import InputProbe, fp_pass, group_sums
from rdoq_plugins.rd.ranges import act_ranges
from rdoq_plugins.rd.spec import CurveSpec
from rdoq_plugins.rd.target import output_distortion

Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]


@torch.no_grad()
def measured_curves(
    model: nn.Module,
    layers: Mapping[str, QuantLayer],
    batches: Sequence[Any],
    outputs: Outputs,
    spec: CurveSpec,
    images: Callable[[Any], int] = lambda b: 1,
    progress: Callable[[Iterable[tuple[str, TensorKind]]], Iterable[tuple[str, TensorKind]]] | None = None,
    reduce_mean: Callable[[Tensor], Tensor] | None = None,
    on_curve: Callable[[LayerCurve], None] | None = None,
) -> dict[tuple[str, TensorKind], LayerCurve]:
    """RD curves measured candidate by candidate (same arguments as ``second_order_curves``;
    ``progress`` wraps the (layer, kind) pairs; ``on_curve`` receives each finished curve, e.g.
    to store it so that an interrupted run resumes after the last finished layer)."""
    a_lo, a_hi, a_elems = (act_ranges(model, layers, batches, outputs, spec, images, reduce_mean)
                           if TensorKind.ACT in spec.kinds else ({}, {}, {}))
    with fp_pass(model):
        fp = [[y.detach().clone() for y in outputs(model, b)] for b in batches]

    def distortion() -> float:
        return sum(output_distortion(ref, outputs(model, b)) for ref, b in zip(fp, batches)) / len(batches)

    jobs = [(n, k) for k in spec.kinds for n in layers]
    curves: dict[tuple[str, TensorKind], LayerCurve] = {}
    with fp_pass(model), InputProbe(layers, track_grad=False, record=False) as probe:
        for name, kind in progress(jobs) if progress is not None else jobs:
            layer, group, grid = layers[name], spec.group(kind), spec.grid(kind)
            if kind is TensorKind.WEIGHT:
                weight = layer.weight
                lo, hi = group_ranges(weight, group)
                elems = group_sums(torch.ones_like(weight), group, 0).double()
            else:
                lo, hi, elems = a_lo[name], a_hi[name], a_elems[name]
            dist = torch.zeros(lo.numel(), len(grid.bits), len(grid.ratios))
            for i, j, b, r in grid:
                if kind is TensorKind.WEIGHT:
                    dist[:, i, j] = _weight_groups(layer, group, lo, hi, b, r, distortion)
                    continue
                for gi in range(lo.numel()):
                    probe.rewrite[name] = _act_rewrite(group, gi, lo, hi, b, r)
                    dist[gi, i, j] = distortion()
                    probe.rewrite.pop(name)
            if reduce_mean is not None:
                dist = reduce_mean(dist)
            curve = curves[(name, kind)] = LayerCurve(name, kind, group, grid, elems, lo, hi, dist)
            if on_curve is not None:
                on_curve(curve)
    return curves


def _weight_groups(layer: QuantLayer, group: Any, lo: Tensor, hi: Tensor, b: int, r: float,
                   measure: Callable[[], float]) -> Tensor:
    """The distortion of each weight group alone quantized by candidate ``(b, r)``: ``[groups]``."""
    weight: Tensor = layer.weight  # type: ignore[assignment]
    saved = weight.detach().clone()
    quantized = quantize_groups(saved, group, lo, hi, b, r)
    unit = unit_index(group, weight.shape[0]).to(weight.device)
    out = torch.zeros(lo.numel())
    try:
        for gi in range(lo.numel()):
            rows = unit == gi
            weight.data[rows] = quantized[rows]
            out[gi] = measure()
            weight.data[rows] = saved[rows]
    finally:
        weight.data.copy_(saved)
    return out


def _act_rewrite(group: Any, gi: int, lo: Tensor, hi: Tensor, b: int, r: float) -> Callable[[Tensor], Tensor]:
    """A pre-hook rewrite that quantizes input group ``gi`` only."""

    def rewrite(x: Tensor) -> Tensor:
        channels = unit_index(group, x.shape[group.axis]).to(x.device) == gi
        q = quantize_groups(x, group, lo, hi, b, r)
        shape = [1] * x.dim()
        shape[group.axis] = -1
        return torch.where(channels.reshape(shape), q, x)

    return rewrite
