"""Second-order RD curves: close to the measured ones, an error for a layer the target cannot see,
and no activation pass when only weights are asked for."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from rdoq_plugins.rd import (
    CandidateGrid,
    CurveSpec,
    TensorKind,
    UnseenLayerError,
    measured_curves,
    second_order_curves,
)
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]

GRID = CandidateGrid((2, 4, 6, 8), (1.0, 0.7))
SPEC = CurveSpec(kinds=(TensorKind.WEIGHT, TensorKind.ACT), weight_group=4, act_group=4, weight_grid=GRID,
                 act_grid=GRID, projections=48, kappa=0.0)


def _stack(curves: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.concatenate([curves[k].distortion.numpy().ravel() for k in sorted(curves)])


def test_second_order_matches_measured(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    fast = second_order_curves(model, layers, batches, outputs, SPEC)
    slow = measured_curves(model, layers, batches, outputs, SPEC)
    assert set(fast) == set(slow) == {(n, k) for n in layers for k in SPEC.kinds}
    a, b = _stack(fast), _stack(slow)
    assert np.all(b >= 0) and np.all(a >= 0)
    # Same order of magnitude everywhere, and closely correlated on a log scale.
    corr = np.corrcoef(np.log(a + 1e-12), np.log(b + 1e-12))[0, 1]
    assert corr > 0.95, corr
    ratio = a.sum() / b.sum()
    assert 0.7 < ratio < 1.4, ratio


def test_unseen_layer_is_an_error(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    with pytest.raises(UnseenLayerError, match="fc"):
        second_order_curves(model, layers, batches, lambda m, b: m(b)[:2], SPEC)


def test_weight_curves_need_no_act_pass(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    curves = second_order_curves(model, layers, batches, outputs, CurveSpec(weight_grid=GRID, projections=1))
    assert {k for _, k in curves} == {TensorKind.WEIGHT}
    assert before == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(int(q.fake_quant_enabled) == 1 for l in layers.values() for q in (l.weight_quantizer,))
    assert isinstance(model, nn.Module)


def test_the_seed_fixes_the_projections(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_grid=GRID, projections=2, kappa=0.0)
    runs = [second_order_curves(model, layers, batches, outputs, s)
            for s in (spec, spec, CurveSpec(weight_grid=GRID, projections=2, kappa=0.0, seed=1))]
    assert all(torch.equal(runs[0][k].distortion, runs[1][k].distortion) for k in runs[0])
    assert not all(torch.equal(runs[0][k].distortion, runs[2][k].distortion) for k in runs[0])


def test_kappa_adds_the_isotropic_term_to_weights_only(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    base = CurveSpec(kinds=(TensorKind.WEIGHT, TensorKind.ACT), weight_grid=GRID, act_grid=GRID, projections=1,
                     kappa=0.0)
    plain = second_order_curves(model, layers, batches, outputs, base)
    iso = second_order_curves(model, layers, batches, outputs, replace(base, kappa=1.0))
    for (name, kind), curve in plain.items():
        extra = iso[(name, kind)].distortion - curve.distortion
        if kind is TensorKind.ACT:
            assert torch.equal(extra, torch.zeros_like(extra)), name
        else:
            assert torch.all(extra >= 0) and extra.sum() > 0, name
            # ½‖Δ‖² shrinks as the bits grow (best ratio = 1.0 column).
            assert torch.all(extra[:, 0, 0] > extra[:, -1, 0]), name
