"""Watching layers during an RD pass: layer inputs (dense or sparse), the FP switch, group sums."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.modules import quantizers
from rdoq_plugins.rd.probe import InputProbe, fp_pass, group_sums, layer_input, per_sample
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]


class Sparse:
    """The duck-typed interface of a sparse tensor: features, per-row indices, replace_feature."""

    def __init__(self, features: Tensor, indices: Tensor) -> None:
        self.features, self.indices = features, indices

    def replace_feature(self, features: Tensor) -> Sparse:
        return Sparse(features, self.indices)


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.shared = nn.Linear(3, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.shared(self.shared(self.first(x)))


def test_layer_input_reads_tensors_and_sparse_tensors() -> None:
    x = torch.randn(2, 3)
    values, put_back, sample = layer_input(x, "a")
    assert values is x and put_back(values) is values and sample is None
    sparse = Sparse(torch.randn(5, 3), torch.tensor([[0, 4], [0, 1], [1, 2], [1, 0], [1, 3]]))
    values, put_back, sample = layer_input(sparse, "b")
    assert values is sparse.features and sample.tolist() == [0, 0, 1, 1, 1]
    assert put_back(values * 0).features.abs().sum() == 0
    with pytest.raises(TypeError, match="c: RD curves need a tensor input or a sparse tensor"):
        layer_input([x], "c")


def test_probe_records_every_call_rewrites_and_unhooks() -> None:
    model = Twice()
    x = torch.randn(2, 3)
    ref = model(x)
    layers = {"first": model.first, "shared": model.shared}
    with InputProbe(layers, track_grad=False) as probe:
        out = model(x)
        assert torch.equal(out, ref)
        assert [len(probe.calls[n]) for n in layers] == [1, 2] and probe.samples["shared"] == [None, None]
        assert torch.equal(probe.calls["shared"][0], model.first(x))
        probe.clear()
        probe.rewrite["first"] = torch.zeros_like
        assert torch.allclose(model(x), model.shared(model.shared(model.first.bias.expand(2, 4))))
        assert torch.equal(probe.calls["first"][0], torch.zeros(2, 3))
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert probe.calls == {"first": [], "shared": []}


def test_tracked_inputs_give_the_gradient_of_each_call() -> None:
    model = Twice()
    x = torch.randn(2, 3)
    with InputProbe({"shared": model.shared}, track_grad=True) as probe:
        y = model(x).sum()
        first_call, second_call = probe.calls["shared"]
        g1, g2 = torch.autograd.grad(y, [first_call, second_call])
    w = model.shared.weight.detach()
    assert torch.allclose(g2, torch.ones(2, 4) @ w)
    assert torch.allclose(g1, torch.ones(2, 4) @ w @ w)


def test_probe_without_recording_still_rewrites_sparse_inputs() -> None:
    class Features(nn.Module):
        def forward(self, s: Sparse) -> Tensor:
            return s.features

    layer = Features()
    sparse = Sparse(torch.ones(3, 2), torch.tensor([[0], [1], [1]]))
    with InputProbe({"f": layer}, track_grad=False, record=False) as probe:
        probe.rewrite["f"] = lambda t: 2 * t
        assert torch.equal(layer(sparse), 2 * torch.ones(3, 2))
        assert probe.calls["f"] == []


def test_fp_pass_switches_quantizers_off_and_restores_them(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    layers["conv2"].weight_quantizer.enable_observer(True)
    before = [(int(q.fake_quant_enabled), int(q.observer_enabled)) for q in quantizers(model)]
    with torch.no_grad():
        quantized_out = outputs(model, batches[0])[0]
    with pytest.raises(RuntimeError, match="inside"), fp_pass(model, {"conv1": layers["conv1"]}):
        assert all(int(q.fake_quant_enabled) == 0 and int(q.observer_enabled) == 0 for q in quantizers(model))
        assert layers["conv1"].weight.requires_grad and not layers["conv2"].weight.requires_grad
        with torch.no_grad():
            assert not torch.allclose(outputs(model, batches[0])[0], quantized_out)
        raise RuntimeError("inside")
    assert [(int(q.fake_quant_enabled), int(q.observer_enabled)) for q in quantizers(model)] == before
    assert not layers["conv1"].weight.requires_grad


def test_group_sums_and_per_sample_sums() -> None:
    t = torch.arange(2 * 6 * 3, dtype=torch.float64).reshape(2, 6, 3)  # [lead, channels, elements]
    g = PerGroup(0, 4)
    out = group_sums(t, g, keep=1)
    assert out.shape == (2, 2)
    assert torch.equal(out, torch.stack([t[:, :4].sum((1, 2)), t[:, 4:].sum((1, 2))], 1))
    assert torch.equal(group_sums(t[0], g, keep=0), out[0])
    # [projections, samples, channels, positions]: two dims kept, the group axis 1 counted after one
    # leading dim, so the channels (dim 2) are grouped: 0-3 and 4.
    t4 = torch.randn(3, 2, 5, 6, dtype=torch.float64)
    got = group_sums(t4, PerGroup(1, 4), keep=2, lead=1)
    assert got.shape == (3, 2, 2)
    assert torch.allclose(got[..., 0], t4[:, :, :4].sum((2, 3))) and torch.allclose(got[..., 1], t4[:, :, 4].sum(2))
    rows = torch.randn(2, 5, 3)
    by_sample = per_sample(rows, torch.tensor([1, 0, 1, 1, 0]), 2)
    assert torch.allclose(by_sample[:, 0], rows[:, [1, 4]].sum(1))
    assert torch.allclose(by_sample[:, 1], rows[:, [0, 2, 3]].sum(1))
    assert per_sample(rows, None, 5) is rows
