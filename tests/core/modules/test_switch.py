"""The quantization switch: weights and activations on or off, for a model or one layer."""
from __future__ import annotations

import torch
from torch import nn

from rdoq_plugins import calibrate, load_quant_config, quantize_model, set_quant_state
from rdoq_plugins.modules import quantizers, set_observer_state

MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


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


def test_quantizers_filter_by_kind_and_observers_switch_alone() -> None:
    model = _net()
    quantize_model(model, load_quant_config(MINMAX))
    weights, acts = list(quantizers(model, weight=True)), list(quantizers(model, weight=False))
    assert len(weights) == len(acts) == 2 and len(list(quantizers(model))) == 4
    assert all(q.is_weight for q in weights) and not any(q.is_weight for q in acts)
    set_observer_state(model, act=True)
    assert [int(q.observer_enabled) for q in acts] == [1, 1] and [int(q.observer_enabled) for q in weights] == [0, 0]
    set_observer_state(model, weight=True, act=False)
    assert [int(q.observer_enabled) for q in acts] == [0, 0] and [int(q.observer_enabled) for q in weights] == [1, 1]
    set_quant_state(model, act=True)  # weights left as they are
    assert [int(q.fake_quant_enabled) for q in (*weights, *acts)] == [0, 0, 1, 1]
    assert list(quantizers(nn.ReLU())) == []
