"""Config-driven placement: which layers get which quantizers, where the activation quantizer sits."""
from __future__ import annotations

import torch
from torch import nn

from rdoq_plugins import ActPosition, QuantLayer, load_quant_config, quantize_model
from rdoq_plugins.granularity import PerChannel, PerTensor
from rdoq_plugins.modules import build_quantizer
from rdoq_plugins.quant import LSQFakeQuantize

MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


def test_overrides_by_name_and_regex() -> None:
    cfg = load_quant_config({**MINMAX, "overrides": {"0": {"w_qconfig": {"bit": 8}}, "re:[3]": None}})
    model = _net()
    wrapped = quantize_model(model, cfg)
    assert list(wrapped) == ["0"]
    assert model[0].weight_quantizer.bits.tolist() == [8] * 8
    assert not isinstance(model[3], QuantLayer)


def test_include_and_activation_position() -> None:
    model = _net()
    wrapped = quantize_model(model, load_quant_config(MINMAX), include=lambda name, m: isinstance(m, nn.Linear))
    assert list(wrapped) == ["3"] and not isinstance(model[0], QuantLayer)
    out = quantize_model(_net(), load_quant_config(MINMAX), act_position=ActPosition.OUTPUT)
    assert out["0"].input_quantizer is None and out["0"].output_quantizer.num_channels == 1
    none = quantize_model(_net(), load_quant_config(MINMAX), act_position=ActPosition.NONE)
    assert all(layer.input_quantizer is None and layer.output_quantizer is None for layer in none.values())
    inputs = quantize_model(_net(), load_quant_config(MINMAX))
    assert inputs["0"].input_quantizer is not None and inputs["3"].weight_quantizer.bits.numel() == 10


def test_nested_layers_are_replaced_in_their_parent() -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1)), nn.Conv2d(4, 2, 1))
    wrapped = quantize_model(model, load_quant_config(MINMAX))
    assert list(wrapped) == ["0.0", "1"] and model[0][0] is wrapped["0.0"]
    x = torch.randn(1, 3, 4, 4)
    assert model(x).shape == (1, 2, 4, 4)


def test_build_quantizer_follows_the_entry() -> None:
    cfg = load_quant_config({"w_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "MSEObserver", "bit": 3,
                                           "symmetric": True, "ch_axis": 0}})
    q = build_quantizer(cfg.w_qconfig, 6, is_weight=True)
    assert isinstance(q, LSQFakeQuantize) and q.is_weight and q.symmetric
    assert q.granularity == PerChannel(0) and q.bits.tolist() == [3] * 6
    assert type(q.observer).__name__ == "MSEObserver"
    a = build_quantizer(load_quant_config(MINMAX).a_qconfig, 6, is_weight=False)
    assert a.granularity == PerTensor() and a.bits.tolist() == [4] and not a.is_weight
