"""The quant section of an OpenPCDet config (``pcdet_ext.config``), and the shipped ``configs/pcdet/``."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from pcdet_ext.config import EXTRA_KEYS, calib_options, parse_quant, quant_section, quant_sets
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import ConfigError, load_quant_config
from tests.pcdet_ext.conftest import PCDET_CONFIGS


def test_quant_section_from_the_config_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text("a_qconfig: {bit: 8}\ncalibrate: 16\n")
    cfg = {"MODEL": {}, "QUANT": {"w_qconfig": {"bit": 2}, "calibrate": 4, "calib": {"split": "test"}}}
    qcfg, calib = parse_quant(quant_section(cfg, tmp_path / "q.yaml"))
    assert (qcfg.w_qconfig.bit, qcfg.a_qconfig.bit, qcfg.calibrate) == (2, 8, 16)  # the file's keys win
    assert calib == {"split": "test", "batch_size": 2, "seed": 1005, "augment": False}
    assert parse_quant(quant_section({"MODEL": {}}, None))[0] == load_quant_config(None, ("calib",))
    with pytest.raises(ConfigError, match="upper case"):
        quant_section({"quant": {"calibrate": 4}}, None)
    with pytest.raises(ConfigError, match="expected a mapping"):
        quant_section({"QUANT": [1, 2]}, None)
    with pytest.raises(ConfigError, match="--quant_cfg"):
        quant_section({}, tmp_path / "missing.yaml")
    for bad, match in (({"recon": {"dro_prob": 0.5}}, "did you mean 'drop_prob'"),
                       ({"calib": {"split": "val"}}, "calib.split"),
                       ({"calib": {"samples_per_gpu": 2}}, "calib.samples_per_gpu"),
                       ({"calib": {"split": "test", "augment": True}}, "calib.augment"),
                       ({"calib": {"batch_size": 0}}, "calib.batch_size")):
        with pytest.raises(ConfigError, match=match):
            parse_quant(bad)


def test_the_expected_pcdet_configs_exist() -> None:
    assert {p.stem for p in PCDET_CONFIGS} >= {
        "voxelnext_nuscenes_qdrop_w4a8", "voxelnext_nuscenes_qdrop_w4a4", "voxelnext_nuscenes_rdoq_w2a8",
        "voxelnext_nuscenes_rdoq_w4a8", "voxelnext_nuscenes_rdoq_w6a8", "voxelnext_nuscenes_rdoq_w8a8"}


@pytest.mark.parametrize("path", PCDET_CONFIGS, ids=lambda p: p.stem)
def test_pcdet_config_validates(path: Path) -> None:
    qcfg = load_quant_config(path, extra_keys=EXTRA_KEYS)
    calib_options(qcfg.extra.get("calib"))
    assert (qcfg.rdoq is not None) == ("rdoq" in path.stem)
    assert (qcfg.recon is not None) == ("qdrop" in path.stem)
    names = {n for n, _ in toy.build_toy(narrow=True, blocks=1).named_modules()}
    assert all(key in names for key, _ in qcfg.overrides)  # VoxelNeXt's module names (the toy mirrors them)
    if qcfg.rdoq is not None:
        rd = qcfg.rdoq
        assert (rd.solver, rd.estimator.value, rd.target.value) == ("dp", "second_order", "weight")
        assert rd.apply_rate == float(path.stem.split("_w")[-1].split("a")[0])
        assert rd.target_rates == (2.0, 4.0, 6.0, 8.0)
    else:
        assert qcfg.w_qconfig.bit == 4 and qcfg.a_qconfig.bit == int(path.stem[-1])


def test_the_file_is_merged_into_the_quant_section(tmp_path: Path) -> None:
    first = {"backbone_3d.conv_input.0": {"w_qconfig": {"bit": 8}, "a_qconfig": None}}
    cfg = {"QUANT": {"w_qconfig": {"bit": 4, "ch_axis": 0}, "calib": {"split": "test", "seed": 3},
                     "overrides": first}}
    (tmp_path / "q.yaml").write_text("w_qconfig: {bit: 2}\ncalib: {seed: null}\n"
                                     "overrides: {'re:dense_head\\..*': null}\n")
    qcfg, calib = parse_quant(quant_section(cfg, tmp_path / "q.yaml"))
    assert (qcfg.w_qconfig.bit, qcfg.w_qconfig.ch_axis) == (2, 0)
    assert calib == {"split": "test", "batch_size": 2, "seed": 1005, "augment": False}  # null: the default
    assert [k for k, _ in qcfg.overrides] == ["re:dense_head\\..*", "backbone_3d.conv_input.0"]  # both kept


def test_set_quant_keys_apply_after_the_file_with_or_without_a_quant_key(tmp_path: Path) -> None:
    """Issue 16, item 6: ``--set QUANT.*`` on a config without a ``QUANT:`` key changes the
    ``--quant_cfg`` section; the other ``--set`` pairs are OpenPCDet's."""
    sets = ["DATA_CONFIG.DATA_PATH", "/x", "QUANT.calibrate", "4", "QUANT.recon.iters", "7",
            "QUANT.calib.seed", "null", "QUANT.rdoq", "null"]
    assert quant_sets(sets) == {"calibrate": 4, "recon": {"iters": 7}, "calib": {"seed": None}, "rdoq": None}
    (tmp_path / "q.yaml").write_text("calibrate: 16\nrecon: {iters: 100, drop_prob: 0.3}\ncalib: {seed: 3}\n"
                                     "rdoq: {target_rates: [4]}\n")
    for cfg in ({"MODEL": {}}, {"MODEL": {}, "QUANT": {"calibrate": 2}}):
        qcfg, calib = parse_quant(quant_section(cfg, tmp_path / "q.yaml", sets))
        assert qcfg.calibrate == 4 and qcfg.recon is not None and qcfg.rdoq is None
        assert (qcfg.recon.iters, qcfg.recon.drop_prob) == (7, 0.3)  # the file's other keys stay
        assert calib["seed"] == 1005  # null: the default
    assert parse_quant(quant_section({}, None, ["QUANT.w_qconfig.bit", "2"]))[0].w_qconfig.bit == 2
    with pytest.raises(ConfigError, match="did you mean 'calibrate'"):
        parse_quant(quant_section({}, tmp_path / "q.yaml", ["QUANT.calibrat", "4"]))


def test_qdrops_own_config_file_as_quant_cfg(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "config.yaml").write_text(
        "quant:\n  w_qconfig: {bit: 2}\n  calibrate: 4\n  recon: {batch_size: 32}\n"
        "model: {type: resnet18}\ndata: {path: /ImageNet}\nprocess: {seed: 1005}\n")
    with caplog.at_level(logging.WARNING, logger="rdoq_plugins"):
        qcfg, _ = parse_quant(quant_section({"QUANT": {"calibrate": 64}}, tmp_path / "config.yaml"))
    assert (qcfg.w_qconfig.bit, qcfg.calibrate) == (2, 4) and qcfg.recon is not None
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("--quant_cfg ") and "ignoring the other top-level keys: model (" in line
    assert "; data (" in line and "; process (" in line
    (tmp_path / "beside.yaml").write_text("quant: {calibrate: 4}\ncalib: {seed: 1}\n")
    with pytest.raises(ConfigError, match="calib: beside the top-level 'quant' mapping"):
        quant_section({}, tmp_path / "beside.yaml")
