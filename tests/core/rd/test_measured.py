"""Measured RD curves: one group quantized alone, the output distortion measured."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import unit_index
from rdoq_plugins.modules import set_quant_state
from rdoq_plugins.rd import (
    CandidateGrid,
    CurveSpec,
    TensorKind,
    group_ranges,
    measured_curves,
    output_distortion,
    quantize_groups,
)
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]

GRID = CandidateGrid((2, 4, 6, 8), (1.0, 0.7))
SPEC = CurveSpec(kinds=(TensorKind.WEIGHT, TensorKind.ACT), weight_group=4, act_group=4, weight_grid=GRID,
                 act_grid=GRID, projections=48, kappa=0.0)


def test_more_bits_less_distortion(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    curves = measured_curves(model, layers, batches, outputs, SPEC)
    for curve in curves.values():
        _, dist, _ = curve.best()
        assert torch.all(dist[:, 0] > dist[:, -1]), curve.layer


def test_a_weight_entry_is_the_distortion_of_that_group_alone(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_group=4, weight_grid=CandidateGrid((2, 4), (1.0, 0.7)))
    seen: list[tuple[str, TensorKind]] = []
    jobs: list[tuple[str, TensorKind]] = []

    def progress(items):  # type: ignore[no-untyped-def]
        jobs.extend(items)
        return jobs

    conv2 = {"conv2": layers["conv2"]}
    weight = layers["conv2"].weight.detach().clone()
    curves = measured_curves(model, conv2, batches, outputs, spec, progress=progress,
                             on_curve=lambda c: seen.append((c.layer, c.kind)))
    assert jobs == seen == [("conv2", TensorKind.WEIGHT)]
    assert torch.equal(layers["conv2"].weight, weight)  # every candidate undone
    curve = curves[("conv2", TensorKind.WEIGHT)]
    assert curve.distortion.shape == (4, 2, 2)  # 16 output channels in groups of 4
    assert curve.elements.tolist() == [4 * weight[0].numel()] * 4

    # Group 1 at 2 bits on 0.7 of its range, by hand: every quantizer off, those rows replaced.
    group = spec.group(TensorKind.WEIGHT)
    lo, hi = group_ranges(weight, group)
    rows = unit_index(group, weight.shape[0]) == 1
    set_quant_state(model, weight=False, act=False)
    with torch.no_grad():
        fp = [[y.clone() for y in outputs(model, b)] for b in batches]
        layers["conv2"].weight[rows] = quantize_groups(weight, group, lo, hi, 2, 0.7)[rows]
        by_hand = sum(output_distortion(f, outputs(model, b)) for f, b in zip(fp, batches)) / len(batches)
        layers["conv2"].weight.copy_(weight)
    assert by_hand > 0
    assert float(curve.distortion[1, 0, 1]) == pytest.approx(by_hand, rel=1e-5)


def test_reduce_mean_reaches_every_distortion(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_group=8, weight_grid=CandidateGrid((2, 8), (1.0,)))
    fc = {"fc": layers["fc"]}
    plain = measured_curves(model, fc, batches, outputs, spec)[("fc", TensorKind.WEIGHT)]
    doubled = measured_curves(model, fc, batches, outputs, spec, reduce_mean=lambda t: 2 * t)
    assert torch.allclose(doubled[("fc", TensorKind.WEIGHT)].distortion, 2 * plain.distortion)
