"""The real OpenPCDet on CPU (``make test-openpcdet``): with ``OPENPCDET_ROOT`` at a checkout (no
build needed; :mod:`pcdet_ext.standins` stands in for its compiled ops), the stock VoxelNeXt
(``cbgs_voxel0075_voxelnext.yaml``, random weights) is built on CPU, quantized, and evaluated on
the generated nuScenes-format set (:mod:`rdoq_bench.nuscenes_format`) through OpenPCDet's own
``NuScenesDataset`` and ``eval_one_epoch``, post-processing (rotated NMS) and recall (3D IoU)
included. The nuScenes metric itself needs the devkit's tables, which the generator does not
write yet: ``dataset.evaluation`` is replaced by a recorder here."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

pcdet_ext = pytest.importorskip("pcdet_ext", reason="pcdet_ext needs spconv")

ROOT = os.environ.get("OPENPCDET_ROOT")
pytestmark = [
    pytest.mark.skipif(not ROOT, reason="OPENPCDET_ROOT is not set: point it at an OpenPCDet checkout and run "
                                        "`make test-openpcdet` (docs/openpcdet.md)"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path; with CUDA nothing is patched"),
]

CFG = "cfgs/nuscenes_models/cbgs_voxel0075_voxelnext.yaml"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """OpenPCDet imported, patched for CPU, its stock config read with DATA_PATH on a generated set
    (3 val keyframes of 10 sweeps), the test loader and the real VoxelNeXt with random weights."""
    from pcdet_ext.detector import load_data_to_device
    from pcdet_ext.openpcdet_import import import_pcdet
    from rdoq_bench.nuscenes_format import NuScenesSpec, write_nuscenes

    data = tmp_path_factory.mktemp("nuscenes")
    write_nuscenes(data, NuScenesSpec(train_frames=1, val_frames=3, points=6000, sweep_points=2000, seed=1))
    pcdet = import_pcdet(need_eval=True)
    applied = pcdet_ext.apply_cpu_patches()
    cwd = os.getcwd()
    os.chdir(Path(pcdet.pcdet.__file__).resolve().parents[1] / "tools")
    try:
        cfg = pcdet.config.cfg
        pcdet.config.cfg_from_yaml_file(CFG, cfg)
        pcdet.config.cfg_from_list(["DATA_CONFIG.DATA_PATH", str(data)], cfg)
        logger = pcdet.common_utils.create_logger(None)
        test_set, loader, _ = pcdet.build_dataloader(dataset_cfg=cfg.DATA_CONFIG, class_names=cfg.CLASS_NAMES,
                                                     batch_size=1, dist=False, workers=0, logger=logger,
                                                     training=False)
        torch.manual_seed(0)
        model = pcdet.build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=test_set).eval()
        pcdet.eval_utils.load_data_to_gpu = lambda batch: load_data_to_device(batch, "cpu")
        yield SimpleNamespace(pcdet=pcdet, cfg=cfg, test_set=test_set, loader=loader, model=model, logger=logger,
                              applied=applied, work=tmp_path_factory.mktemp("eval"))
    finally:
        os.chdir(cwd)


def test_patches_and_stand_ins_are_in_effect(real: SimpleNamespace) -> None:
    from pcdet.ops.iou3d_nms import iou3d_nms_utils

    from pcdet_ext import iou3d_cpu
    from pcdet_ext.openpcdet_cpu import IOU3D_PATCH, TENSOR_CUDA_PATCH

    assert IOU3D_PATCH in real.applied and TENSOR_CUDA_PATCH in real.applied
    assert iou3d_nms_utils.nms_gpu is iou3d_cpu.nms_gpu and iou3d_nms_utils.boxes_iou3d_gpu is iou3d_cpu.boxes_iou3d_gpu
    assert real.model.dense_head.point_cloud_range.device.type == "cpu"  # built with .cuda() on CPU


def test_real_voxelnext_quantizes_every_spconv_layer(real: SimpleNamespace) -> None:
    import copy

    from pcdet_ext.detector import check_supported, remaining_batchnorms
    from rdoq_plugins import fuse_conv_bn
    from rdoq_plugins.config.load import load_quant_config

    model = copy.deepcopy(real.model)
    check_supported(model)
    fuse_conv_bn(model)
    assert not remaining_batchnorms(model)
    wrapped = pcdet_ext.quantize_sparse_model(model, load_quant_config(None))
    assert len(wrapped) == 25 + 5 + 1 + 73  # SubMConv3d, SparseConv3d, SparseConv2d, SubMConv2d
    assert len(pcdet_ext.sparse_units(model)) == 56


def test_fp_evaluation_runs_end_to_end_on_the_generated_set(real: SimpleNamespace,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def record(det_annos: list[dict], class_names: list[str], **kwargs: Any) -> tuple[str, dict[str, float]]:
        seen["annos"] = det_annos
        return "recorded", {"frames": float(len(det_annos))}

    monkeypatch.setattr(real.test_set, "evaluation", record)
    args = SimpleNamespace(save_to_file=False, infer_time=False)
    np.random.seed(1024)
    with torch.no_grad():
        ret = real.pcdet.eval_utils.eval_one_epoch(real.cfg, args, real.model, real.loader, "fp", real.logger,
                                                   result_dir=real.work)
    assert ret["frames"] == 3.0
    assert "recall/rcnn_0.3" in ret  # generate_recall_record ran boxes_iou3d_gpu on CPU
    annos = seen["annos"]
    assert len(annos) == 3
    for anno in annos:
        boxes = anno["boxes_lidar"]
        assert boxes.ndim == 2 and boxes.shape[1] == 9 and np.isfinite(boxes).all()
        assert set(anno["name"]) <= set(real.cfg.CLASS_NAMES)
        assert len(boxes) <= 500  # MAX_OBJ_PER_SAMPLE after per-class NMS
