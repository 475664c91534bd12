"""Config-driven placement: which layers get which quantizers, where the activation quantizer sits, and
overrides that name no layer of the model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins import ActPosition, ConfigError, QuantLayer, load_quant_config, quantize_model
from rdoq_plugins.granularity import PerChannel, PerTensor
from rdoq_plugins.modules import build_quantizer, check_overrides, quantizable_layers
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


class _Named(nn.Module):
    """Named layers, as a detector's: ``backbone.conv1``, ``backbone.layer1.conv1``, ``head.fc_cls``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Conv2d(3, 4, 1)
        self.backbone.layer1 = nn.Module()
        self.backbone.layer1.conv1 = nn.Conv2d(4, 4, 1)
        self.head = nn.Module()
        self.head.fc_cls = nn.Linear(4, 2)


def _rejects(overrides: dict, match: str) -> ConfigError:
    model = _Named()
    with pytest.raises(ConfigError, match=match) as err:
        quantize_model(model, load_quant_config({**MINMAX, "overrides": overrides}))
    assert not any(isinstance(m, QuantLayer) for m in model.modules())  # raised before any layer is swapped
    return err.value


def test_an_override_that_names_no_layer_is_an_error_naming_key_value_and_closest_layers() -> None:
    err = _rejects({"backbone.conv1": {"w_qconfig": {"bit": 8}}, "backbone.conv_1": {"w_qconfig": {"bit": 8},
                                                                                     "a_qconfig": None}},
                   "names no quantizable layer")
    assert err.key == "overrides.backbone.conv_1"
    assert str(err) == ("quant config: overrides.backbone.conv_1: names no quantizable layer of the model "
                        "(closest layers: backbone.conv1, backbone.layer1.conv1); "
                        "got {'w_qconfig': {'bit': 8}, 'a_qconfig': None}")
    # A module that is no quantizable layer (a container) names none either; null is the value shown.
    assert "got None" in str(_rejects({"backbone.layer1": None}, "overrides.backbone.layer1: names no"))


def test_a_pattern_that_fully_matches_no_layer_is_an_error() -> None:
    err = _rejects({"re:fc_cls": None}, r"overrides.re:fc_cls: matches no quantizable layer")
    assert "the pattern must match whole names; it matches inside head.fc_cls" in str(err)
    err = _rejects({"re:neck\\..*": {"w_qconfig": {"observer": "MSEObserver"}}},
                   "matches no quantizable layer")
    assert "the model's layers: backbone.conv1, backbone.layer1.conv1, head.fc_cls" in str(err)
    assert "got {'w_qconfig': {'observer': 'MSEObserver'}}" in str(err)


def test_overrides_that_match_pass_and_the_check_can_be_skipped() -> None:
    names = quantizable_layers(_Named())
    assert names == ["backbone.conv1", "backbone.layer1.conv1", "head.fc_cls"]
    cfg = load_quant_config({**MINMAX, "overrides": {"backbone.conv1": None, "re:.*\\.conv1": {}}})
    check_overrides(cfg, names)
    # An override of a layer that ``include`` leaves FP still names a layer of the model.
    head_off = quantize_model(_Named(), load_quant_config({**MINMAX, "overrides": {"head.fc_cls": None}}),
                              include=lambda name, _: not name.startswith("head."))
    assert list(head_off) == ["backbone.conv1", "backbone.layer1.conv1"]
    # A stored config is rebuilt whatever its overrides (check=False).
    stale = load_quant_config({**MINMAX, "overrides": {"re:bbox_head\\..*": None}})
    assert len(quantize_model(_Named(), stale, check=False)) == 3


def test_position_follows_the_config_or_the_callers_choice_per_layer() -> None:
    output = {**MINMAX, "a_qconfig": {**MINMAX["a_qconfig"], "position": "output"}}
    follows = quantize_model(_net(), load_quant_config(output))
    assert all(q.input_quantizer is None and q.output_quantizer is not None for q in follows.values())
    per_layer = quantize_model(_net(), load_quant_config(output),
                               act_position=lambda name, m: ActPosition.NONE if name == "3" else ActPosition.INPUT)
    assert per_layer["0"].input_quantizer is not None and per_layer["3"].input_quantizer is None
    assert per_layer["3"].output_quantizer is None
    # An adapter that only quantizes inputs cannot honour output placement: one line naming the key.
    with pytest.raises(ConfigError, match=r"^quant config: a_qconfig\.position: this model's adapter quantizes "
                                          r"layer inputs only; got 'output'; allowed: input$"):
        quantize_model(_net(), load_quant_config(output), act_position=ActPosition.INPUT)
    assert quantize_model(_net(), load_quant_config(MINMAX))["0"].input_quantizer is not None  # default: input
