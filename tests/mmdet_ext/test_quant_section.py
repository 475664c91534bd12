"""Every shipped quant config loads with mmcv and passes the quant section's validation; a
``--quant-config`` file is merged into the section, and may be QDrop's own config file."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from mmcv import Config

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.prepare import prepare
from mmdet_ext.quant_section import hook_configs, merge_quant_section, parse_quant_section
from mmdet_ext.quantize import plan_quantization
from rdoq_plugins import QuantLayer

REPO = Path(__file__).resolve().parents[2]
QUANT_CONFIGS = sorted(p for d in ("mmdet/qdrop", "mmdet/rdoq", "bench/qdrop", "bench/rdoq")
                       for p in (REPO / "configs" / d).glob("*.py"))


def test_the_expected_configs_exist() -> None:
    names = {p.stem for p in QUANT_CONFIGS}
    for det in ("faster_rcnn", "retinanet"):
        for depth in ("r50", "r101"):
            for suffix in ("w4a4", "w2a4", "rdoq_w3a4", "rdoq_qdrop_w3a4"):
                assert f"{det}_{depth}_fpn_2x_coco_{suffix}" in names
        assert f"{det}_r50_narrow_digits_rdoq_w3a4" in names


@pytest.mark.parametrize("path", QUANT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_validates(path: Path) -> None:
    cfg = Config.fromfile(str(path))
    qcfg = parse_quant_section(merge_quant_section(cfg.get("quant"), None))
    hooks = [h["type"] for h in hook_configs(qcfg)]
    assert hooks[0] == "QuantCalibHook"
    assert ("QDropReconHook" in hooks) == (qcfg.recon is not None)
    assert ("BitAllocHook" in hooks) == ("rdoq" in path.stem) == (qcfg.rdoq is not None)
    assert "mmdet_ext" in cfg.custom_imports["imports"]


W8_FIRST_CONV = "overrides={'backbone.conv1': dict(w_qconfig=dict(bit=8), a_qconfig=None)}"


def test_a_quant_config_file_is_merged_into_the_section(make_config: Callable[..., Path],
                                                         random_checkpoint: Callable[[str], Path],
                                                         tmp_path: Path) -> None:
    quant = f"quant = dict(calibrate=4, recon=None, w_qconfig=dict(ch_axis=0), {W8_FIRST_CONV})"
    config = make_config(quant=quant, name="merged")
    qfile = tmp_path / "q.yaml"
    qfile.write_text("w_qconfig: {bit: 3, observer: MinMaxObserver}\n"
                     "overrides:\n  're:roi_head\\.bbox_head\\.fc_(cls|reg)': null\n")
    prep = prepare(config, random_checkpoint("faster_rcnn_r50_narrow_digits.py"), tmp_path / "work", qfile)
    assert prep.qcfg.w_qconfig.bit == 3 and prep.qcfg.w_qconfig.ch_axis == 0  # merged key by key
    model = plan_quantization(prep).session.model
    first = model.backbone.conv1
    assert isinstance(first, QuantLayer) and first.input_quantizer is None  # the config's W8 first conv stays
    assert first.weight_quantizer.bits.unique().tolist() == [8]
    assert model.backbone.layer1[0].conv1.weight_quantizer.bits.unique().tolist() == [3]
    head = model.roi_head.bbox_head
    assert not isinstance(head.fc_cls, QuantLayer) and not isinstance(head.fc_reg, QuantLayer)  # the file's
    assert isinstance(head.shared_fcs[0], QuantLayer)


QDROP_IMAGENET_LAYOUT = """\
quant:
    a_qconfig: {quantizer: LSQFakeQuantize, observer: MSEObserver, bit: 4, symmetric: False, ch_axis: -1}
    w_qconfig: {quantizer: AdaRoundFakeQuantize, observer: MSEObserver, bit: 2, symmetric: False, ch_axis: 0}
    calibrate: 4
    recon: {batch_size: 32, scale_lr: 4.0e-5, warm_up: 0.2, weight: 0.01, iters: 20000, b_range: [20, 2],
            keep_gpu: True, round_mode: learned_hard_sigmoid, drop_prob: 0.5}
model:
    type: resnet18
    kwargs: {num_classes: 1000}
    path: /mnt/lustre/model_zoo/resnet18_imagenet.pth.tar
data: {path: /mnt/lustre/share/ImageNet-Pytorch/, batch_size: 64, num_workers: 4}
process:
    seed: 1005
"""


def test_qdrops_own_config_file_is_read_as_it_is(make_config: Callable[..., Path],
                                                 random_checkpoint: Callable[[str], Path], tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    qfile = tmp_path / "config.yaml"
    qfile.write_text(QDROP_IMAGENET_LAYOUT)
    config = make_config(quant=f"quant = dict({W8_FIRST_CONV})", name="qdrop_layout")
    with caplog.at_level(logging.WARNING, logger="rdoq_plugins"):
        prep = prepare(config, random_checkpoint("faster_rcnn_r50_narrow_digits.py"), tmp_path / "w", qfile)
    qcfg = prep.qcfg
    assert (qcfg.w_qconfig.bit, qcfg.a_qconfig.observer, qcfg.calibrate) == (2, "MSEObserver", 4)
    assert qcfg.recon is not None and qcfg.recon.batch_size == 32 and qcfg.recon.iters == 20000
    assert [k for k, _ in qcfg.overrides] == ["backbone.conv1"]
    [line] = [r.getMessage() for r in caplog.records if "QDrop's layout" in r.getMessage()]
    assert line.startswith(f"--quant-config {qfile}: QDrop's layout: reading its 'quant' section; "
                           "ignoring the other top-level keys: model (")
    assert "; data (" in line and "; process (" in line and "\n" not in line


def test_the_official_preset_quantizes_backbone_and_fpn_only(make_config: Callable[..., Path],
                                                              random_checkpoint: Callable[[str], Path],
                                                              tmp_path: Path) -> None:
    preset = REPO / "configs" / "mmdet" / "_base_" / "qdrop_official_w4a4.py"
    for base in ("faster_rcnn_r50_narrow_digits.py", "retinanet_r50_narrow_digits.py"):
        config = tmp_path / f"official_{base}"
        config.write_text(f"_base_ = ['{make_config(base, name='plain_' + base[:4])}', '{preset}']\n"
                          "quant = dict(calibrate=2)\n")
        model = plan_quantization(prepare(config, random_checkpoint(base), tmp_path / base, None)).session.model
        layers = [n for n, m in model.named_modules() if isinstance(m, QuantLayer)]
        assert layers and all(n.startswith(("backbone.", "neck.")) for n in layers), base
        assert any(n.startswith("neck.") for n in layers)
        first = model.get_submodule("backbone.conv1")
        assert first.input_quantizer is None and int(first.weight_quantizer.bits.max()) == 8
