"""recon.exclude: which units a reconstruction leaves out."""
from __future__ import annotations

import pytest

from rdoq_plugins import load_quant_config
from rdoq_plugins.config import ConfigError
from rdoq_plugins.recon.select import select_units

UNITS = ["backbone.layer1.0", "neck.fpn_convs.0", "bbox_head.cls_convs.0", "bbox_head.retina_cls"]


def test_excluded_units_are_left_out_in_order() -> None:
    assert select_units(UNITS, [r"bbox_head\..*"]) == UNITS[:2]
    assert select_units(UNITS, []) == UNITS
    assert select_units(UNITS, ["neck.fpn_convs.0", r".*retina_cls"]) == [UNITS[0], UNITS[2]]


def test_a_pattern_matching_no_unit_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"recon\.exclude.*matches no reconstruction unit.*rpn_head"):
        select_units(UNITS, [r"rpn_head\..*"])
    with pytest.raises(ConfigError, match="matches no"):
        select_units(UNITS, ["bbox_head"])  # full match: a prefix is not enough


def test_exclude_is_written_with_the_config() -> None:
    assert load_quant_config({}).to_dict()["recon"]["exclude"] == []
    assert load_quant_config({"recon": {"exclude": ["a"]}}).to_dict()["recon"]["exclude"] == ["a"]
