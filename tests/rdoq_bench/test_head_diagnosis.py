"""The per-part diagnosis on a quickly quantized bench Faster R-CNN: one row per asked part, every
quantizer ends in the state it started in, and an unknown part is an input error before any evaluation."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mmdet_ext.prepare import prepare
from rdoq_bench.head_diagnosis import diagnose, diagnose_model
from rdoq_plugins.modules.switch import quantizers
from rdoq_plugins.errors import InputError
from tests.mmdet_ext.conftest import make_config, random_checkpoint, small_digits  # noqa: F401 (fixtures)
from tools.test import main as run_test_tool

QUANT = "quant = dict(calibrate=4, calib=dict(samples_per_gpu=2), hooks=[dict(type='QuantCalibHook')])"


@pytest.fixture(scope="module")
def quantized(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    config = make_config(quant=QUANT, name="diagnosis")
    work = tmp_path_factory.mktemp("diagnosis")
    run_test_tool([str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")), "--work-dir", str(work),
                   "--skip-fp"])
    return config, work / "quantized.pth"


def test_part_rows_and_quantizer_states_restored(quantized: tuple[Path, Path]) -> None:
    config, ckpt = quantized
    prep = prepare(config, ckpt, config.parent / "work", None, need_calib=False)
    det = prep.model.eval()
    next(quantizers(det.roi_head)).enable_fake_quant(False)  # a switched-off quantizer stays off
    before = [bool(q.fake_quant_enabled) for q in quantizers(det)]
    result = diagnose_model(prep, det, ["rpn_head", "roi_head"])
    assert [bool(q.fake_quant_enabled) for q in quantizers(det)] == before
    assert [r["part"] for r in result["rows"]] == ["rpn_head", "roi_head"]
    for r in result["rows"]:
        assert r["quantizers"] > 0 and r["kind"] == "both"
        assert r["recovered"] == pytest.approx(r["bbox_mAP_part_fp"] - result["bbox_mAP_quant"], abs=1e-4)


def test_one_layer_one_kind(quantized: tuple[Path, Path]) -> None:
    config, ckpt = quantized
    prep = prepare(config, ckpt, config.parent / "work", None, need_calib=False)
    det = prep.model.eval()
    layer = "roi_head.bbox_head.fc_cls"
    before = [bool(q.fake_quant_enabled) for q in quantizers(det)]
    row = diagnose_model(prep, det, [layer], "act")["rows"][0]
    assert (row["part"], row["kind"]) == (layer, "act")
    assert row["quantizers"] == sum(1 for _ in quantizers(det.get_submodule(layer), weight=False)) >= 1
    assert [bool(q.fake_quant_enabled) for q in quantizers(det)] == before


def test_unknown_part_is_an_input_error(quantized: tuple[Path, Path]) -> None:
    config, ckpt = quantized
    with pytest.raises(InputError, match="bbox_head"):
        diagnose(config, ckpt, ["bbox_head"])
    with pytest.raises(InputError, match="roi_head.nothing"):
        diagnose(config, ckpt, ["roi_head.nothing"])
