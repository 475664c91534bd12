"""The shipped COCO configs at the size users run them: full-width models, images at 1333x800.

Random weights (COCO cannot be had here) on two generated 1333x800 images, one 2-image batch:
calibration as configured, every registered observer on the largest activation (ResNet layer1's
input, 34.4 M values: more than float32 counts exactly), the reconstruction of one unit of each
kind for a few steps through a float16 cache spilled to disk, and, on Faster R-CNN, RD curves for
the batch (two CPU minutes of the test's five; RetinaNet's layers are of the same shapes).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.compact_batch import CompactBatch
from mmdet_ext.detector import detector_units
from mmdet_ext.prepare import build_structure, prepare
from mmdet_ext.quantize import quantize
from rdoq_bench.coco_scale import data_options, generate_coco_scale
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import ChunkCache, QDropReconstructor, cache_unit, capture_calls, survey_units
from rdoq_plugins.registry import OBSERVERS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "faster_rcnn_r50": REPO / "configs/mmdet/rdoq/faster_rcnn_r50_fpn_2x_coco_rdoq_qdrop_w3a4.py",
    "retinanet_r101": REPO / "configs/mmdet/rdoq/retinanet_r101_fpn_2x_coco_rdoq_qdrop_w3a4.py",
}
# RD curves on the one batch, with a small candidate grid: the size is what is under test.
RDOQ = {"calib_images": 2, "weight_bits": [2, 4], "weight_ratios": [1.0], "act_bits": [4, 8], "act_ratios": [1.0],
        "projections": 1, "target": "both", "target_rates": [3], "act_rate": 6, "additivity": False}


@pytest.fixture(scope="module")
def coco_scale(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmdet.datasets import CocoDataset

    return generate_coco_scale(tmp_path_factory.mktemp("coco_scale"), CocoDataset.CLASSES, num_images=2)


def _random_checkpoint(config: Path, folder: Path) -> Path:
    from mmcv import Config
    from mmdet.datasets import CocoDataset

    torch.manual_seed(0)
    model = build_structure(Config.fromfile(str(config)))
    model.init_weights()
    path = folder / "random.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"CLASSES": list(CocoDataset.CLASSES)}}, path)
    return path


def _quantized(name: str, coco_scale: Path, tmp_path: Path, curves: bool) -> Any:
    """Calibrated (2 images) as the shipped config says, and with ``curves`` RD curves computed."""
    config = CONFIGS[name]
    options = {**data_options(coco_scale), "quant.calibrate": 2}
    options.update({f"quant.rdoq.{k}": v for k, v in RDOQ.items()})
    prep = prepare(config, _random_checkpoint(config, tmp_path), tmp_path / "work", None, options)
    return quantize(prep, hooks=[{"type": "QuantCalibHook"}, *([{"type": "RDCurvesHook"}] if curves else [])]).session


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shipped_coco_config_at_1333x800(name: str, coco_scale: Path, tmp_path: Path) -> None:
    ctx = _quantized(name, coco_scale, tmp_path, curves=name == "faster_rcnn_r50")
    [batch] = ctx.batches
    assert isinstance(batch, CompactBatch) and batch.compact
    img = batch["img"].data[0]
    assert img.shape[-2:] == (800, 1344) and batch.image_bytes == img.numel()  # one byte a value

    # Every observer on layer1's input: more values than float32 indexes exactly.
    [(x, _)] = capture_calls(ctx.fp_model, ctx.fp_model.backbone.layer1[1], batch, ctx.adapter.run, with_output=False,
                             num_calls=1)
    assert x.numel() > 1 << 24
    for observer_name, observer in OBSERVERS.items():
        obs = observer()
        obs(x, torch.tensor([4]))
        scale, _ = obs.calculate_qparams(torch.tensor([4]))
        assert torch.isfinite(scale).all() and float(scale) > 0, observer_name

    # RD curves for the batch: every allocated layer's weights, and its input (not per-level ones).
    if name == "faster_rcnn_r50":
        info = ctx.result.curves
        assert info is not None and info.reused == 0 and info.computed > info.layers and info.images == 2

    # One unit of each kind, a few steps, through a float16 cache that spills to disk.
    survey = survey_units(ctx.fp_model, detector_units(ctx.model), batch, ctx.adapter.run)
    kinds: dict[str, Any] = {}
    for s in survey:
        kinds.setdefault(type(ctx.model.get_submodule(s.name)).__name__, s)
    assert len(kinds) >= 3, sorted(kinds)
    recon = QDropReconstructor(ReconConfig(iters=2, batch_size=2))
    for kind, s in kinds.items():
        with ChunkCache("cpu", 0, tmp_path / "spill", store_dtype=torch.float16) as cache:
            cache_unit(ctx.model, ctx.fp_model, s.name, [batch], ctx.adapter.run, cache, num_calls=s.calls)
            assert cache.num_chunks == s.calls and cache.bytes_on_disk > 0
            with torch.enable_grad():
                stats = recon(ctx.model.get_submodule(s.name), cache)
        assert stats.iters == 2 and math.isfinite(stats.final_loss), (kind, s.name)
