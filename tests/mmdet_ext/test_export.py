"""tools/export.py on the bench detectors quantized with a quick QDrop W4A4 config: weights.packed
rebuilds the model bit-exactly at its predicted size; the ONNX Q/DQ networks pass the checker, match
every quantized layer in onnxruntime and give the fake-quantized box AP through mmdet's
post-processing; a RetinaNet keeps its per-level head steps."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tools.test import main as run_test_tool

pytest.importorskip("onnxruntime")
QUANT = "quant = dict(calibrate=4, calib=dict(samples_per_gpu=2), recon=dict(iters=4, batch_size=1))"
RETINA = "retinanet_r50_narrow_digits.py"


@pytest.fixture(scope="module")
def quantized(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    made: dict[str, tuple[Path, Path]] = {}

    def make(base: str = "faster_rcnn_r50_narrow_digits.py") -> tuple[Path, Path]:
        if base not in made:
            extra = "\nmodel = dict(test_cfg=dict(score_thr=0.001))" if base == RETINA else ""
            config = make_config(base=base, quant=QUANT + extra, name=f"export_{Path(base).stem}")
            work = tmp_path_factory.mktemp("quantized")
            run_test_tool([str(config), str(random_checkpoint(base)), "--work-dir", str(work), "--skip-fp"])
            made[base] = (config, work / "quantized.pth")
        return made[base]

    return make


def test_packed_faster_rcnn_rebuilds_bit_exactly(quantized: Callable[..., tuple[Path, Path]], tmp_path: Path) -> None:
    from mmdet_ext.export import DenseNetwork
    from mmdet_ext.prepare import build_quantized_model, load_config
    from rdoq_plugins.export import deployed_state_dict, load_packed, write_packed
    from rdoq_plugins.footprint import size_bytes
    from rdoq_plugins.workflow.checkpoint import read_checkpoint

    config, ckpt_path = quantized()
    cfg, ckpt = load_config(config, None), read_checkpoint(ckpt_path)
    model, _ = build_quantized_model(cfg, ckpt, ckpt_path)
    info = write_packed(model, tmp_path / "weights.packed")
    fresh, _ = build_quantized_model(cfg, ckpt, ckpt_path)
    with torch.no_grad():
        for p in fresh.parameters():
            p.normal_()
    load_packed(fresh, tmp_path / "weights.packed")
    a, b = deployed_state_dict(model), deployed_state_dict(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    img = torch.randn(1, 3, 160, 128)
    with torch.no_grad():
        assert all(torch.equal(x, y) for x, y in zip(DenseNetwork(model)(img), DenseNetwork(fresh)(img)))
    predicted = size_bytes(model)["quant"]
    assert predicted <= info["bytes"] <= predicted * 1.01  # the header included


def test_export_faster_rcnn_matches_layer_by_layer_and_in_ap(quantized: Callable[..., tuple[Path, Path]],
                                                             tmp_path: Path) -> None:
    from tools.export import main as export

    config, ckpt = quantized()
    report = export([str(config), str(ckpt), "--out", str(tmp_path), "--check", "--images", "2", "--eval"])
    assert {p.name for p in tmp_path.iterdir()} >= {"model.onnx", "roi_head.onnx", "weights.packed", "export.json"}
    assert json.loads((tmp_path / "export.json").read_text())["check"]["first_over"] is None
    check = report["check"]
    assert check["first_over"] is None and check["worst"]["max_rel_diff"] <= 1e-3
    assert any(k.startswith("roi_head.bbox_head") for k in check["layers"])
    assert len(check["layers"]) == sum(len(g["layers"]) for g in report["graphs"].values())
    layers = report["graphs"]["model"]["layers"]
    assert layers["backbone.layer1.0.conv1"]["backbone.layer1.0.conv1.weight"]["containers"] == ["UINT4"]
    # The graphs as written, run as --eval runs them: onnxruntime's int32 bias rewrite moved the
    # network by ~1e-2. The RoI head's graph reads the propagated RoI features, where a 4-bit grid
    # flip moves an output by a step, so only the dense network is held to the tolerance.
    assert check["deployed"]["model"] <= 1e-3, check["deployed"]
    assert abs(report["ap"]["onnxruntime"] - report["ap"]["fakequant"]) <= 0.002


def test_export_retinanet_keeps_per_level_head_steps(quantized: Callable[..., tuple[Path, Path]],
                                                     tmp_path: Path) -> None:
    from tools.export import main as export

    config, ckpt = quantized(RETINA)
    report = export([str(config), str(ckpt), "--out", str(tmp_path), "--check", "--images", "2"])
    keys = report["graphs"]["model"]["layers"]["bbox_head.retina_cls"]
    assert {f"bbox_head.retina_cls.input_quantizer.levels.{i}" for i in range(5)} <= set(keys)
    assert report["check"]["first_over"] is None, report["check"]["worst"]
