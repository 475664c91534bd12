"""RD curves: the second-order estimate against measured distortion, and what the target sees."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import outputs  # type: ignore[import-not-found]
from torch import nn

from rdoq_plugins.modules import set_quant_state
from rdoq_plugins.rd import (
    CandidateGrid,
    CurveSpec,
    CurveStore,
    TensorKind,
    UnseenLayerError,
    apply_choice,
    curve_table,
    measured_curves,
    output_distortion,
    predicted_distortion,
    second_order_curves,
)

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


def test_more_bits_less_distortion(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    curves = measured_curves(model, layers, batches, outputs, SPEC)
    for curve in curves.values():
        _, dist, _ = curve.best()
        assert torch.all(dist[:, 0] > dist[:, -1]), curve.layer


def test_unseen_layer_is_an_error(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    with pytest.raises(UnseenLayerError, match="fc"):
        second_order_curves(model, layers, batches, lambda m, b: m(b)[:2], SPEC)


def test_allocation_is_additive_and_applies(quantized, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    curves = second_order_curves(model, layers, batches, outputs, SPEC)
    store = CurveStore(tmp_path, "k")
    for c in curves.values():
        store.save(c)
    curves = {k: store.load(*k) for k in curves}  # the stored form is what gets applied
    table = curve_table(list(curves.values()))
    with torch.no_grad():
        set_quant_state(model, weight=False, act=False)
        fp = [[y.clone() for y in model(b)] for b in batches]
    predicted, measured = [], []
    for bits in (4, 6, 8):
        choice = np.full(len(table.rate), GRID.bits.index(bits))
        averages = apply_choice(layers, table, choice)
        assert all(abs(v - bits) < 1e-9 for v in averages.values())
        set_quant_state(model, weight=True, act=True)
        with torch.no_grad():
            measured.append(np.mean([output_distortion(f, model(b)) for f, b in zip(fp, batches)]))
        predicted.append(predicted_distortion(table, choice))
    assert measured[0] > measured[1] > measured[2]
    ratios = np.asarray(predicted) / np.asarray(measured)
    assert np.all((ratios > 0.5) & (ratios < 2.0)), ratios


def test_applied_quantizer_uses_group_bits(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_group=4, weight_grid=GRID, projections=2)
    curves = second_order_curves(model, layers, batches, outputs, spec)
    table = curve_table([curves[("conv2", TensorKind.WEIGHT)]])
    choice = np.array([0, 1, 2, 3])  # 16 output channels -> 4 groups at 2, 4, 6, 8 bits
    apply_choice(layers, table, choice)
    q = layers["conv2"].weight_quantizer
    assert q.bits.tolist() == [2, 4, 6, 8]
    q.enable_fake_quant(True)
    w = layers["conv2"].weight
    err = (q(w) - w).pow(2).flatten(1).mean(1).reshape(4, 4).mean(1)
    assert torch.all(err[:-1] > err[1:])


def test_store_resumes(quantized, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_group=4, weight_grid=GRID, projections=1)
    curves = second_order_curves(model, layers, batches, outputs, spec)
    store = CurveStore(tmp_path, "abc")
    store.save(curves[("conv1", TensorKind.WEIGHT)])
    keys = [(n, k) for k in spec.kinds for n in layers]
    assert store.missing(keys) == [(n, TensorKind.WEIGHT) for n in layers if n != "conv1"]
    back = store.load("conv1", TensorKind.WEIGHT)
    assert torch.equal(back.distortion, curves[("conv1", TensorKind.WEIGHT)].distortion)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_weight_curves_need_no_act_pass(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    curves = second_order_curves(model, layers, batches, outputs, CurveSpec(weight_grid=GRID, projections=1))
    assert {k for _, k in curves} == {TensorKind.WEIGHT}
    assert before == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(int(q.fake_quant_enabled) == 1 for l in layers.values() for q in (l.weight_quantizer,))
    assert isinstance(model, nn.Module)
