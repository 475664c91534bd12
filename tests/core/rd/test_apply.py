"""From curves to quantizers: the allocation table, the predicted distortion, and per-group grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rdoq_plugins.modules import set_quant_state
from rdoq_plugins.rd import (
    CandidateGrid,
    CurveSpec,
    CurveStore,
    TensorKind,
    apply_choice,
    curve_table,
    output_distortion,
    predicted_distortion,
    second_order_curves,
    set_group_grid,
)
from rdoq_plugins.rd.apply import allocated_quantizer
from tests.core.rd.conftest import outputs, synthetic_curve  # type: ignore[import-not-found]

GRID = CandidateGrid((2, 4, 6, 8), (1.0, 0.7))
SPEC = CurveSpec(kinds=(TensorKind.WEIGHT, TensorKind.ACT), weight_group=4, act_group=4, weight_grid=GRID,
                 act_grid=GRID, projections=48, kappa=0.0)


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


def test_table_stacks_best_ratios_and_pads_shorter_grids() -> None:
    w = synthetic_curve("a", TensorKind.WEIGHT, (0, 2, 4, 8), groups=3)
    x = synthetic_curve("b", TensorKind.ACT, (2, 4), groups=2, seed=1)
    table = curve_table([w, x])
    assert table.offsets == (0, 3, 5) and table.rate.shape == table.distortion.shape == (5, 4)
    rate, dist, idx = w.best()
    assert np.array_equal(table.rate[:3], rate.numpy()) and np.allclose(table.distortion[:3], dist.numpy())
    assert np.array_equal(table.ratio_index[:3], idx.numpy())
    assert table.allowed[:3].all() and table.allowed[3:].tolist() == [[True, True, False, False]] * 2
    # A padded column repeats the last real one, so a solver that ignores ``allowed`` gains nothing.
    assert np.array_equal(table.rate[3:, 2:], table.rate[3:, 1:2].repeat(2, 1))
    assert table.elements == float(w.whole_elements().sum() + x.whole_elements().sum())
    assert table.rate[0, 1] == 2 * float(w.whole_elements()[0])

    at_least_4 = curve_table([w, x], min_bits=4)
    assert at_least_4.allowed[:3].tolist() == [[False, False, True, True]] * 3
    assert at_least_4.allowed[3:].tolist() == [[False, True, False, False]] * 2
    with pytest.raises(ValueError, match="min_bits=9 leaves no candidate"):
        curve_table([w, x], min_bits=9)
    with pytest.raises(ValueError, match="no RD curves"):
        curve_table([])


def test_predicted_distortion_sums_the_chosen_entries() -> None:
    table = curve_table([synthetic_curve("a", TensorKind.WEIGHT, (2, 4, 8), groups=4)])
    choice = np.array([0, 2, 1, 2])
    assert predicted_distortion(table, choice) == pytest.approx(sum(table.distortion[g, c] for g, c in enumerate(choice)))
    more_bits = predicted_distortion(table, np.full(4, 2))
    assert more_bits < predicted_distortion(table, choice) < predicted_distortion(table, np.zeros(4, dtype=int))


def test_grids_need_an_asymmetric_single_quantizer(quantized) -> None:  # type: ignore[no-untyped-def]
    _, layers, _ = quantized
    curve = synthetic_curve("conv2", TensorKind.WEIGHT, (2, 4), groups=4)
    q = allocated_quantizer(layers["conv2"], TensorKind.WEIGHT, "conv2")
    assert q is layers["conv2"].weight_quantizer
    layers["conv2"].input_quantizer = None
    with pytest.raises(ValueError, match="conv2 has no single act quantizer"):
        allocated_quantizer(layers["conv2"], TensorKind.ACT, "conv2")
    q.symmetric = True
    with pytest.raises(ValueError, match="asymmetric grids"):
        set_group_grid(q, curve, 16, torch.tensor([2, 4, 2, 4]), torch.ones(4))


def test_group_grid_sets_bits_steps_and_observer_range(quantized) -> None:  # type: ignore[no-untyped-def]
    _, layers, _ = quantized
    curve = synthetic_curve("conv2", TensorKind.WEIGHT, (2, 4), groups=4)
    q = layers["conv2"].weight_quantizer
    ratios = torch.tensor([1.0, 0.5, 1.0, 0.5])
    set_group_grid(q, curve, 16, torch.tensor([2, 4, 4, 2]), ratios)
    assert q.bits.tolist() == [2, 4, 4, 2] and q.scale.shape == (4,)
    assert torch.allclose(q.observer.lo, curve.lo * ratios) and torch.allclose(q.observer.hi, curve.hi * ratios)
    levels = torch.tensor([3.0, 15.0, 15.0, 3.0])
    assert torch.allclose(q.scale, (curve.hi - curve.lo) * ratios / levels)
    # The grid spans the clipped range: its ends map to the integer ends.
    assert torch.allclose(q.observer.lo / q.scale + q.zero_point, torch.zeros(4), atol=0.5)
