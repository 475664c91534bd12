"""Quantized wrappers: they are the layer they wrap, run on the fake-quantized weight, and cache it."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rdoq_plugins import (
    ActPosition,
    QuantLayer,
    calibrate,
    load_quant_config,
    quantize_model,
    set_quant_state,
)
from rdoq_plugins.granularity import PerTensor
from rdoq_plugins.modules import QuantAct, QuantLinear, quantizers
from rdoq_plugins.quant import FakeQuantize
from tests.conftest import MINMAX


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


def test_wrapper_is_the_layer_shares_weights_and_matches_fp_when_off() -> None:
    model = _net()
    conv = model[0]
    x = torch.randn(2, 3, 8, 8)
    ref = model(x)
    quantize_model(model, load_quant_config(MINMAX))
    q = model[0]
    assert isinstance(q, QuantLayer) and isinstance(q, nn.Conv2d)
    assert q.weight is conv.weight and q.out_channels == 8
    assert set(model.state_dict()) >= {"0.weight", "0.bias", "3.weight", "3.bias"}
    assert torch.allclose(model(x), ref)  # quantizers start disabled


def test_quantized_conv_uses_the_fake_quantized_weight() -> None:
    model = _net()
    x = torch.randn(2, 3, 8, 8)
    quantize_model(model, load_quant_config(MINMAX), act_position=ActPosition.NONE)
    calibrate(model, [x], lambda m, b: m(b)) if list(quantizers(model, weight=False)) else None
    from rdoq_plugins import calibrate_weights

    calibrate_weights(model)
    set_quant_state(model, weight=True, act=False)
    conv = model[0]
    wq = conv.weight_quantizer(conv.weight)
    assert not torch.allclose(wq, conv.weight)
    assert torch.allclose(conv(x), F.conv2d(x, wq, conv.bias))


def test_inference_caches_the_quantized_weight_until_something_changes() -> None:
    model = _net()
    x = torch.randn(2, 3, 8, 8)
    quantize_model(model, load_quant_config(MINMAX))
    calibrate(model, [x], lambda m, b: m(b))
    conv = model[0]
    with torch.no_grad():
        first = conv.quantized_weight()
        assert conv.quantized_weight() is first
        conv.weight_quantizer.scale.mul_(2)  # a new step size invalidates the cache
        second = conv.quantized_weight()
        assert second is not first and not torch.equal(second, first)
        conv.weight.add_(1.0)
        assert not torch.equal(conv.quantized_weight(), second)
    assert conv.quantized_weight().requires_grad  # with autograd: never cached


def test_from_float_shares_tensors_but_not_the_module_tables() -> None:
    fc = nn.Linear(4, 3)
    out_q = FakeQuantize(bit=2, granularity=PerTensor())
    q = QuantLinear.from_float(fc, None, None, out_q)
    assert q.weight is fc.weight and q.bias is fc.bias and q.in_features == 4
    q.register_buffer("extra", torch.zeros(1))
    assert "extra" not in dict(fc.named_buffers()) and "output_quantizer" not in dict(fc.named_children())
    x = torch.randn(5, 4)
    assert torch.equal(q(x), fc(x))  # quantizers start disabled; no weight quantizer keeps the FP weight
    out_q.observe(fc(x))
    out_q.enable_fake_quant(True)
    assert q(x).detach().unique().numel() <= 4 and torch.equal(q(x), out_q(fc(x)))


def test_quant_act_quantizes_after_the_activation() -> None:
    q = FakeQuantize(bit=2, granularity=PerTensor())
    act = QuantAct(q, nn.ReLU())
    x = torch.linspace(-3, 3, 61)
    q.observe(torch.relu(x))
    q.enable_fake_quant(True)
    y = act(x)
    assert torch.all(y[x <= 0] == 0) and y.unique().numel() <= 4
    assert torch.equal(y, q(torch.relu(x)))
    assert isinstance(QuantAct(q).act, nn.Identity)


def test_the_base_wrapper_needs_forward_with_weight() -> None:
    class Bare(QuantLayer, nn.Linear):
        pass

    layer = Bare.from_float(nn.Linear(2, 2))
    with pytest.raises(NotImplementedError):
        layer(torch.randn(1, 2))
