"""Quantized wrappers, the extension point, the switch and the config-driven placement."""
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
    register_quant_layer,
    set_quant_state,
)
from rdoq_plugins.modules import quantizers

MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


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


def test_switch_turns_weight_and_activation_quantization_on_and_off() -> None:
    model = _net()
    x = torch.randn(4, 3, 8, 8)
    ref = model(x)
    quantize_model(model, load_quant_config(MINMAX))
    calibrate(model, [x], lambda m, b: m(b))
    both = model(x)
    set_quant_state(model, weight=False, act=True)
    act_only = model(x)
    set_quant_state(model, weight=False, act=False)
    assert torch.allclose(model(x), ref)
    assert not torch.allclose(both, ref) and not torch.allclose(act_only, both)
    set_quant_state(model[0], weight=True)  # one layer only
    assert model[0].weight_quantizer.fake_quant_enabled.item() == 1
    assert model[3].weight_quantizer.fake_quant_enabled.item() == 0


def test_overrides_by_name_and_regex() -> None:
    cfg = load_quant_config({**MINMAX, "overrides": {"0": {"w_qconfig": {"bit": 8}}, "re:[3]": None}})
    model = _net()
    wrapped = quantize_model(model, cfg)
    assert list(wrapped) == ["0"]
    assert model[0].weight_quantizer.bits.tolist() == [8] * 8
    assert not isinstance(model[3], QuantLayer)


def test_extension_point_registers_a_new_layer_type() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 1))
            self.in_features = self.out_features = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight[:, 0]

    @register_quant_layer(Scale)
    class QuantScale(QuantLayer, Scale):
        def forward_with_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return x * weight[:, 0]

    model = nn.Sequential(Scale())
    wrapped = quantize_model(model, load_quant_config(MINMAX), act_position=ActPosition.OUTPUT)
    assert isinstance(wrapped["0"], QuantScale) and wrapped["0"].output_quantizer is not None
    x = torch.randn(3, 4)
    calibrate(model, [x], lambda m, b: m(b))
    assert model(x).shape == (3, 4)


def test_calibration_that_misses_a_layer_is_an_error() -> None:
    model = _net()
    quantize_model(model, load_quant_config(MINMAX))
    with pytest.raises(RuntimeError, match="without data"):
        calibrate(model, [torch.randn(1, 3, 8, 8)], lambda m, b: m[0](b))


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
