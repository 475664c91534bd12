"""Input ranges and sizes per activation group over the calibration batches."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.modules import quantizers, set_quant_state
from rdoq_plugins.rd import CurveSpec, TensorKind, group_ranges
from rdoq_plugins.rd.ranges import act_ranges
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]

SPEC = CurveSpec(kinds=(TensorKind.ACT,), act_group=4)


def _inputs(model, layers, batch):  # type: ignore[no-untyped-def]
    """Every layer's inputs of one FP forward pass, call by call."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    handles = [layer.register_forward_pre_hook(lambda _, args, n=n: seen[n].append(args[0].detach()))
               for n, layer in layers.items()]
    with torch.no_grad():
        model(batch)
    for h in handles:
        h.remove()
    return seen


def test_ranges_average_per_batch_envelopes_and_sizes_are_per_image(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    lo, hi, elems = act_ranges(model, layers, batches, outputs, SPEC, images=lambda b: b.shape[0])
    assert set(lo) == set(hi) == set(elems) == set(layers)
    assert all(int(q.fake_quant_enabled) == 1 for q in quantizers(model))  # switched back on afterwards
    set_quant_state(model, weight=False, act=False)  # the FP pass the ranges are taken on
    g = SPEC.group(TensorKind.ACT)
    per_batch = [_inputs(model, layers, b) for b in batches]
    for name in layers:
        envelopes = [[group_ranges(x, g) for x in calls[name]] for calls in per_batch]
        want_lo = torch.stack([torch.stack([r[0] for r in env]).amin(0) for env in envelopes]).mean(0)
        want_hi = torch.stack([torch.stack([r[1] for r in env]).amax(0) for env in envelopes]).mean(0)
        assert torch.allclose(lo[name], want_lo) and torch.allclose(hi[name], want_hi), name
    # Elements per image and group: 4 channels x the positions of every call (the shared conv runs
    # at 8x8 and 4x4); conv1's 3 input channels make one smaller group.
    assert elems["conv1"].tolist() == [3 * 64]
    assert elems["shared"].tolist() == [4 * (64 + 16)] * 4
    assert elems["fc"].tolist() == [4] * 4 and elems["fc"].dtype == torch.float64


def test_reduce_mean_reaches_every_figure(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    plain = act_ranges(model, layers, batches, outputs, SPEC, images=lambda b: 1)
    doubled = act_ranges(model, layers, batches, outputs, SPEC, images=lambda b: 1, reduce_mean=lambda t: 2 * t)
    for mine, twice in zip(plain, doubled):
        assert all(torch.allclose(twice[n], 2 * mine[n]) for n in layers)
    assert plain[2]["conv1"].tolist() == [3 * 3 * 64]  # images=1: a batch of 3 counts as one


def test_a_layer_the_target_never_calls_is_an_error(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    with pytest.raises(RuntimeError, match="conv2 was not called"):
        act_ranges(model, layers, batches, lambda m, b: [m.conv1(b)], SPEC, images=lambda b: 1)
