"""The config schema: round trips, per-layer overrides, and errors that name the key, the value
and the allowed values."""
from __future__ import annotations

import pytest

from rdoq_plugins.config import ConfigError, QuantConfig, load_quant_config
from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.quant.qdrop import MixRule


def test_to_dict_round_trips() -> None:
    cfg = load_quant_config({"w_qconfig": {"group_size": 16}, "overrides": {"re:.*cls": None, "a": {"a_qconfig": None}},
                             "recon": {"early_stop": {"window": 10}, "exclude": ["bbox_head\\..*"], "bias_lr": 1e-3}})
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    full = load_quant_config({"recon": {}}).to_dict()
    assert full["version"] == 3 and {"bias_lr", "exclude", "mix"} <= set(full["recon"])  # every key written
    # A version-1 config (no bias_lr / exclude at their defaults) reads back with the defaults.
    old = {**full, "version": 1, "recon": {k: v for k, v in full["recon"].items() if k not in ("bias_lr", "exclude")}}
    assert QuantConfig.from_dict(old).recon == QuantConfig.from_dict(full).recon
    assert cfg.w_qconfig.granularity == PerGroup(0, 16)


def test_mix_default_and_stored_before_it_changed() -> None:
    fresh = load_quant_config({"recon": {}})
    assert fresh.recon.mix is MixRule.ELEMENT
    # A config stored at version 2 without the key mixed twice, and reads back so.
    stored = fresh.to_dict()
    stored["recon"].pop("mix")
    assert QuantConfig.from_dict({**stored, "version": 2}).recon.mix is MixRule.TWICE
    assert QuantConfig.from_dict(stored).recon.mix is MixRule.ELEMENT


def test_override_resolution_order() -> None:
    cfg = load_quant_config({"overrides": {"re:backbone\\..*": {"w_qconfig": {"bit": 8}},
                                           "backbone.conv1": None,
                                           "re:.*fc_cls": {"a_qconfig": None}}})
    assert cfg.for_layer("backbone.conv1") is None
    assert cfg.for_layer("backbone.layer1.0.conv1").w_qconfig.bit == 8
    head = cfg.for_layer("roi_head.bbox_head.fc_cls")
    assert head.a_qconfig is None and head.w_qconfig == cfg.w_qconfig
    assert cfg.for_layer("neck.fpn_convs.0").w_qconfig == cfg.w_qconfig


BAD = [
    ({"recon": {"dro_prob": 0.5}}, "recon.dro_prob", "did you mean 'drop_prob'"),
    ({"wqconfig": {}}, "wqconfig", "did you mean 'w_qconfig'"),
    ({"w_qconfig": {"bit": 17}}, "w_qconfig.bit", "an integer in [1, 16]"),
    ({"a_qconfig": {"bit": 0}}, "a_qconfig.bit", "an integer in [1, 16]"),
    ({"w_qconfig": {"bit": "4"}}, "w_qconfig.bit", "expected an integer"),
    ({"w_qconfig": {"bit": 4.0}}, "w_qconfig.bit", "expected an integer"),
    ({"recon": {"drop_prob": 1.5}}, "recon.drop_prob", "a number in [0.0, 1.0]"),
    ({"recon": {"warm_up": 1.0}}, "recon.warm_up", "a number in [0.0, 1.0)"),
    ({"recon": {"iters": -1}}, "recon.iters", "an integer >= 0"),
    ({"recon": {"b_range": [2, 20]}}, "recon.b_range", "start >= end > 0"),
    ({"recon": {"round_mode": "learned_sigmoid"}}, "recon.round_mode", "learned_hard_sigmoid"),
    ({"recon": {"keep_gpu": "yes"}}, "recon.keep_gpu", "true, false"),
    ({"recon": {"early_stop": {"patience": 3}}}, "recon.early_stop.patience", "min_rel_improvement"),
    ({"recon": {"exclude": "bbox_head"}}, "recon.exclude", "expected a list of regular expressions"),
    ({"recon": {"exclude": ["(["]}}, "recon.exclude", "invalid regular expression"),
    ({"recon": {"bias_lr": -1e-3}}, "recon.bias_lr", "a number in [0.0, inf]"),
    ({"w_qconfig": {"quantizer": "LSQFakeQuantise"}}, "w_qconfig.quantizer", "did you mean 'LSQFakeQuantize'"),
    ({"a_qconfig": {"quantizer": "AdaRoundFakeQuantize"}}, "a_qconfig.quantizer", "quantizes weights only"),
    ({"a_qconfig": {"observer": "MSE"}}, "a_qconfig.observer", "MSEObserver"),
    ({"a_qconfig": {"symmetric": 1}}, "a_qconfig.symmetric", "expected a boolean"),
    ({"a_qconfig": {"group_size": 8}}, "a_qconfig.group_size", "needs a channel axis"),
    ({"w_qconfig": {"group_size": 0}}, "w_qconfig.group_size", "an integer >= 1"),
    ({"calibrate": 0}, "calibrate", "an integer >= 1"),
    ({"overrides": {"re:([": None}}, "overrides.re:([", "invalid regular expression"),
    ({"overrides": {"conv1": {"w_qconfig": {"bits": 8}}}}, "overrides.conv1.w_qconfig.bits", "did you mean 'bit'"),
    ({"overrides": {"conv1": {"weights": None}}}, "overrides.conv1.weights", "a_qconfig, w_qconfig"),
    ({"version": 4}, "version", "an integer in [1, 3]"),
    ({"a_qconfig": {"position": "outputs"}}, "a_qconfig.position", "got 'outputs'; allowed: input, output"),
    ({"w_qconfig": {"position": "output"}}, "w_qconfig.position", "weights have no position"),
    ({"overrides": {"conv1": {"a_qconfig": {"position": "output"}}}}, "overrides.conv1.a_qconfig.position",
     "set it in the top-level a_qconfig"),
    ({"a_qconfig": {"position": "output"}, "rdoq": {"target": "joint"}}, "a_qconfig.position",
     "rdoq.target joint allocates bits to layer inputs"),
]


@pytest.mark.parametrize(("data", "key", "hint"), BAD, ids=[b[1] for b in BAD])
def test_bad_config_names_key_value_and_allowed(data: dict, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_quant_config(data)
    assert err.value.key == key
    assert f"quant config: {key}:" in str(err.value)
    assert hint in str(err.value)


def test_extra_keys_are_kept_only_when_declared() -> None:
    cfg = load_quant_config({"heads": {"rpn": True}}, extra_keys=["heads"])
    assert cfg.extra == {"heads": {"rpn": True}}
    with pytest.raises(ConfigError, match="unknown key"):
        load_quant_config({"heads": {}})


def test_position_is_read_from_the_top_level_a_qconfig_and_round_trips() -> None:
    assert load_quant_config({}).a_qconfig.position == "input" and load_quant_config({}).w_qconfig.position is None
    cfg = load_quant_config({"a_qconfig": {"position": "output"}, "overrides": {"x": {"a_qconfig": {"bit": 8}}},
                             "rdoq": {"target": "weight"}})
    assert cfg.a_qconfig.position == "output" and cfg.for_layer("x").a_qconfig.position == "output"
    data = cfg.to_dict()
    assert data["a_qconfig"]["position"] == "output" and "position" not in data["overrides"]["x"]["a_qconfig"]
    assert QuantConfig.from_dict(data) == cfg
    old = {k: v for k, v in load_quant_config({}).to_dict().items()}
    old["a_qconfig"] = {k: v for k, v in old["a_qconfig"].items() if k != "position"}  # a config stored before the key
    assert QuantConfig.from_dict(old).a_qconfig.position == "input"
