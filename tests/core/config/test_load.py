"""Reading a quant config from YAML files (core schema or QDrop's layout) and framework config objects,
and merging a file into a framework config's section."""
from __future__ import annotations

import logging
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


def _merged(section: dict | None, text: str, tmp_path: Path, extra_keys: tuple[str, ...] = ()) -> dict:
    path = tmp_path / "quant.yaml"
    path.write_text(text)
    return merge_quant_section(section, path, "--quant-config", extra_keys)


def test_the_file_is_merged_into_the_section_key_by_key(tmp_path: Path) -> None:
    section = {"w_qconfig": {"bit": 4, "ch_axis": 0}, "a_qconfig": {"bit": 4},
               "recon": {"iters": 100, "early_stop": {"window": 10}, "b_range": [20, 2]}}
    text = ("w_qconfig:\n    bit: 2\ncalibrate: 8\n"
            "recon: {b_range: [10, 2], early_stop: {min_rel_improvement: 0.1}}\n")
    merged = _merged(section, text, tmp_path)
    assert merged == {"w_qconfig": {"bit": 2, "ch_axis": 0}, "a_qconfig": {"bit": 4}, "calibrate": 8,
                      "recon": {"iters": 100, "early_stop": {"window": 10, "min_rel_improvement": 0.1},
                                "b_range": [10, 2]}}  # lists replace
    assert section["w_qconfig"] == {"bit": 4, "ch_axis": 0}  # the framework config is left alone
    assert merge_quant_section(None, None, "--quant-config") == {}
    assert merge_quant_section(section, None, "--quant-config") == section
    with pytest.raises(ConfigError) as err:
        merge_quant_section(section, tmp_path / "nope.yaml", "--quant-config")
    assert err.value.key == "--quant-config" and "not found" in str(err.value)


def test_overrides_merge_by_layer_name(tmp_path: Path) -> None:
    section = {"overrides": {"backbone.conv1": {"w_qconfig": {"bit": 8}, "a_qconfig": None},
                             "re:.*fc_cls": None, "neck.conv": {"w_qconfig": {"bit": 6}}}}
    text = "overrides:\n  're:.*fc_reg': null\n  neck.conv: {a_qconfig: {bit: 8}}\n"
    merged = _merged(section, text, tmp_path)["overrides"]
    # The W8 first conv stays; the file's entry for neck.conv replaces the section's whole; the
    # file's entries come first, so its patterns are tried first.
    assert merged == {"re:.*fc_reg": None, "neck.conv": {"a_qconfig": {"bit": 8}},
                      "backbone.conv1": {"w_qconfig": {"bit": 8}, "a_qconfig": None}, "re:.*fc_cls": None}
    assert list(merged) == ["re:.*fc_reg", "neck.conv", "backbone.conv1", "re:.*fc_cls"]
    cfg = QuantConfig.from_dict(_merged(section, text, tmp_path))
    assert cfg.for_layer("backbone.conv1").w_qconfig.bit == 8 and cfg.for_layer("head.fc_cls") is None
    # null in an entry keeps that part FP, as in the schema; `{}` gives the layer the section's settings.
    merged = _merged(section, "overrides: {backbone.conv1: {w_qconfig: null}, neck.conv: {}}\n", tmp_path)
    assert merged["overrides"]["backbone.conv1"] == {"w_qconfig": None}
    assert merged["overrides"]["neck.conv"] == {}
    alone = _merged(None, "overrides: {x: {a_qconfig: null}}\n", tmp_path)
    assert alone == {"overrides": {"x": {"a_qconfig": None}}}


def test_null_is_off_at_the_top_level_and_deletes_a_key_inside_a_mapping(tmp_path: Path) -> None:
    section = {"recon": {"iters": 100, "early_stop": {"window": 10}}, "rdoq": {"target_rates": [3]},
               "overrides": {"backbone.conv1": None}, "calib": {"split": "test", "seed": 3}}
    off = _merged(section, "recon: null\nrdoq: null\noverrides: null\n", tmp_path)
    assert off == {"recon": None, "rdoq": None, "overrides": None, "calib": {"split": "test", "seed": 3}}
    cfg = QuantConfig.from_dict(off, ["calib"])
    assert cfg.recon is None and cfg.rdoq is None and cfg.overrides == ()
    deleted = _merged(section, "recon: {early_stop: null, iters: null}\ncalib: {seed: null}\n", tmp_path)
    assert deleted["recon"] == {} and deleted["calib"] == {"split": "test"}
    assert QuantConfig.from_dict(deleted, ["calib"]).recon == QuantConfig.from_dict({}).recon  # the defaults
    # A mapping laid over a section that is off (or absent) turns it on; its nulls are defaults too.
    on = _merged({"recon": None}, "recon: {iters: 5, early_stop: null}\nrdoq: {}\n", tmp_path)
    assert on == {"recon": {"iters": 5}, "rdoq": {}}


QDROP_IMAGENET_YAML = """
quant:
    a_qconfig: {quantizer: LSQFakeQuantize, observer: MSEObserver, bit: 4, symmetric: False, ch_axis: -1}
    w_qconfig: {quantizer: AdaRoundFakeQuantize, observer: MSEObserver, bit: 2, symmetric: False, ch_axis: 0}
    calibrate: 1024
    recon: {batch_size: 32, scale_lr: 4.0e-5, warm_up: 0.2, weight: 0.01, iters: 20000, b_range: [20, 2],
            keep_gpu: True, round_mode: learned_hard_sigmoid, drop_prob: 0.5}
model:                    # architecture details
    type: resnet18        # model name
    kwargs: {num_classes: 1000}
    path: /mnt/lustre/weixiuying/model_zoo/resnet18_imagenet.pth.tar
data: {path: /mnt/lustre/share/ImageNet-Pytorch/, batch_size: 64, num_workers: 4, pin_memory: True,
       input_size: 224, test_resize: 256}
process:
    seed: 1005
"""


def test_reads_qdrops_imagenet_layout_and_names_the_keys_it_ignores(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(QDROP_IMAGENET_YAML)
    with caplog.at_level(logging.WARNING, logger="rdoq_plugins"):
        cfg = load_quant_config(path)
    assert cfg.w_qconfig.bit == 2 and cfg.a_qconfig.observer == "MSEObserver" and cfg.calibrate == 1024
    assert cfg.recon is not None and cfg.recon.batch_size == 32 and cfg.recon.b_range == (20.0, 2.0)
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message and str(path) in message and "QDrop's layout" in message
    assert "ignoring the other top-level keys: model (" in message
    assert "; data (" in message and "; process (" in message and "calib.seed" in message
    # Merged into a section like any file: the quant mapping is what is laid over.
    caplog.clear()
    merged = _merged({"overrides": {"backbone.conv1": None}, "calibrate": 64}, QDROP_IMAGENET_YAML, tmp_path)
    assert merged["calibrate"] == 1024 and merged["overrides"] == {"backbone.conv1": None}
    assert merged["w_qconfig"]["bit"] == 2 and "model" not in merged and len(caplog.records) == 1
    # Only the quant mapping: nothing to warn about.
    caplog.clear()
    assert _merged(None, "quant: {calibrate: 8}\n", tmp_path) == {"calibrate": 8} and not caplog.records


@pytest.mark.parametrize(("text", "extra", "match"), [
    ("quant: {calibrate: 8}\noverrides: {a: null}\nmodel: {}\n", (),
     "quant config: overrides: beside the top-level 'quant' mapping of --quant-config .*quant.yaml"),
    ("quant: {calibrate: 8}\ncalib: {seed: 1}\n", ("calib",),
     "quant config: calib: beside the top-level 'quant'"),
    ("quant: [1, 2]\n", (), "quant config: quant: expected a mapping .QDrop's layout."),
])
def test_qdrop_layout_errors(tmp_path: Path, text: str, extra: tuple[str, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _merged(None, text, tmp_path, extra)


def test_a_config_object_is_returned_as_it_is() -> None:
    cfg = load_quant_config({"w_qconfig": {"bit": 3}})
    assert load_quant_config(cfg) is cfg
    assert load_quant_config(None) == load_quant_config({})
