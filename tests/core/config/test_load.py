"""Reading a quant config from YAML files and framework config objects."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest

from rdoq_plugins.config import ConfigError, QuantConfig, load_quant_config
from rdoq_plugins.config.load import merge_quant_section, plain, read_yaml_mapping
from rdoq_plugins.granularity import PerChannel, PerTensor
from rdoq_plugins.quant import RoundMode

QDROP_YAML = """
a_qconfig:
    quantizer: LSQFakeQuantize
    observer: AvgMSEFastObserver
    bit: 4
    symmetric: False
    ch_axis: -1
w_qconfig:
    quantizer: AdaRoundFakeQuantize
    observer: MSEObserver
    bit: 2
    symmetric: False
    ch_axis: 0
calibrate: 256
recon:
    batch_size: 2
    scale_lr: 4.0e-5
    warm_up: 0.2
    weight: 0.01
    iters: 20000
    b_range: [20, 2]
    keep_gpu: True
    round_mode: learned_hard_sigmoid
    drop_prob: 0.5
"""


def test_reads_qdrops_own_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(QDROP_YAML)
    cfg = load_quant_config(path)
    assert cfg.w_qconfig.bit == 2 and cfg.w_qconfig.granularity == PerChannel(0)
    assert cfg.a_qconfig.granularity == PerTensor()
    assert cfg.recon is not None and cfg.recon.round_mode is RoundMode.LEARNED_HARD_SIGMOID
    assert cfg.recon.b_range == (20.0, 2.0) and cfg.calibrate == 256


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_quant_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a_qconfig: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_quant_config(bad)


def test_top_level_must_be_a_mapping_and_errors_name_the_flag(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level") as err:
        read_yaml_mapping(listing, "--quant-config")
    assert err.value.key == "--quant-config"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml_mapping(empty) == {}
    assert load_quant_config(empty) == QuantConfig.from_dict({})


def test_framework_config_objects_become_plain_dicts_and_lists() -> None:
    class AttrDict(OrderedDict):  # a mapping type of some framework's config
        pass

    section = AttrDict(w_qconfig=AttrDict(bit=3), recon=AttrDict(b_range=(20, 2), exclude=("head",)))
    data = plain(section)
    assert data == {"w_qconfig": {"bit": 3}, "recon": {"b_range": [20, 2], "exclude": ["head"]}}
    assert type(data) is dict and type(data["recon"]) is dict and type(data["recon"]["b_range"]) is list
    assert plain(4) == 4 and plain("s") == "s"


def test_the_file_is_laid_over_the_section(tmp_path: Path) -> None:
    path = tmp_path / "quant.yaml"
    path.write_text("w_qconfig:\n    bit: 2\ncalibrate: 8\n")
    section = {"w_qconfig": {"bit": 4, "ch_axis": 0}, "a_qconfig": {"bit": 4}}
    merged = merge_quant_section(section, path, "--quant-config")
    assert merged == {"w_qconfig": {"bit": 2}, "a_qconfig": {"bit": 4}, "calibrate": 8}  # top-level keys replace
    assert section["w_qconfig"] == {"bit": 4, "ch_axis": 0}  # the framework config is left alone
    assert merge_quant_section(None, None, "--quant-config") == {}
    with pytest.raises(ConfigError) as err:
        merge_quant_section(section, tmp_path / "nope.yaml", "--quant-config")
    assert err.value.key == "--quant-config" and "not found" in str(err.value)


def test_a_config_object_is_returned_as_it_is() -> None:
    cfg = load_quant_config({"w_qconfig": {"bit": 3}})
    assert load_quant_config(cfg) is cfg
    assert load_quant_config(None) == load_quant_config({})
