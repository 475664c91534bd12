"""The forward pass the quantizer runs (``pcdet_ext.detector``): modules before the head, then the
heads, no post-processing; the detectors it supports. With OpenPCDet and CUDA: the real VoxelNeXt
structure (skipped otherwise, with the reason)."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext.config import load_pcdet_config
from pcdet_ext.detector import (
    batch_on,
    check_supported,
    head_forward,
    head_outputs,
    make_run,
    remaining_batchnorms,
)
from pcdet_ext.openpcdet_import import import_pcdet
from pcdet_ext.weights import load_fp_weights
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import fuse_conv_bn, load_quant_config
from tests.pcdet_ext.conftest import HAS_PCDET, toy_with_bn_stats


class _Stage(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.inner, self.key = inner, key

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch[self.key] = self.inner(batch)
        return batch


class _PostProcessingHead(torch.nn.Module):
    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.heads_list = head.heads_list

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("post-processing (CUDA NMS in VoxelNeXt) must not run")


def _pcdet_shaped_toy() -> torch.nn.Module:
    src = toy_with_bn_stats(0)
    model = torch.nn.Module()
    model.backbone_3d = _Stage(src.backbone_3d, "encoded_spconv_tensor")
    model.dense_head = _PostProcessingHead(src.dense_head)
    model.module_list = [model.backbone_3d, model.dense_head]
    return model.eval()


def test_head_forward_skips_post_processing_and_leaves_the_batch_alone() -> None:
    model = _pcdet_shaped_toy()
    check_supported(model)
    scene = toy.make_scenes(1, seed=3)[0]
    batch = {"voxel_features": scene.voxel_features.numpy(),
             "voxel_coords": np.pad(scene.voxel_coords.numpy(), ((0, 0), (1, 0))), "batch_size": 1,
             "frame_id": np.array(["f0"]), "image_shape": np.array([[4, 5]])}
    on_cpu = batch_on(batch, "cpu")
    assert on_cpu["voxel_coords"].dtype == torch.float32 and on_cpu["image_shape"].dtype == torch.int32
    assert isinstance(on_cpu["frame_id"], np.ndarray) and isinstance(batch["voxel_features"], np.ndarray)
    keys = set(on_cpu)
    with torch.no_grad():
        preds = head_forward(model, on_cpu)
        outs = head_outputs(model, on_cpu)
    assert set(on_cpu) == keys  # the modules wrote into a copy
    assert [list(p) for p in preds] == [["center", "center_z", "dim", "rot", "hm"]] * 2
    assert len(outs) == 10 and all(torch.equal(a, b) for a, b in zip(outs, [t for p in preds for t in p.values()]))
    _, outputs = make_run(torch.device("cpu"))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(outputs(model, batch), outs))
    # Unsupported shapes of detector are refused before any work.
    with pytest.raises(ValueError, match="single-stage"):
        check_supported(toy.build_toy(narrow=True, blocks=1))
    model.roi_head = torch.nn.Identity()
    model.module_list = [model.backbone_3d, model.dense_head, model.roi_head]
    with pytest.raises(ValueError, match="second stage"):
        check_supported(model)


# ---------------------------------------------------------------------------------------------
# With OpenPCDet (and CUDA: VoxelNeXtHead puts tensors on the GPU when it is built)
# ---------------------------------------------------------------------------------------------
def _voxelnext(tools_dir: Path) -> torch.nn.Module:
    pcdet = import_pcdet(need_eval=False)
    cwd = os.getcwd()
    os.chdir(tools_dir)
    try:
        cfg = load_pcdet_config(pcdet, "cfgs/nuscenes_models/cbgs_voxel0075_voxelnext.yaml")
    finally:
        os.chdir(cwd)
    dataset = SimpleNamespace(class_names=list(cfg.CLASS_NAMES), point_feature_encoder=SimpleNamespace(
        num_point_features=5), grid_size=np.array([1440, 1440, 40]), point_cloud_range=np.array(
        cfg.DATA_CONFIG.POINT_CLOUD_RANGE, dtype=np.float32), voxel_size=[0.075, 0.075, 0.2],
        depth_downsample_factor=None)
    return pcdet.build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=dataset)


NO_REAL_VOXELNEXT = (
    "OpenPCDet (pcdet) is not importable: install it from source (python setup.py develop) with spconv-cuXXX"
    if not HAS_PCDET else "no CUDA: OpenPCDet's VoxelNeXtHead puts tensors on the GPU when it is built"
    if not torch.cuda.is_available() else "")


@pytest.mark.skipif(bool(NO_REAL_VOXELNEXT), reason=NO_REAL_VOXELNEXT)
def test_real_voxelnext_structure() -> None:  # pragma: no cover - needs OpenPCDet and a GPU
    pcdet = import_pcdet(need_eval=False)
    tools_dir = Path(pcdet.pcdet.__file__).resolve().parents[1] / "tools"
    model = _voxelnext(tools_dir)
    check_supported(model)
    state = copy.deepcopy(model.state_dict())
    load_fp_weights(model, state, "own state")
    fuse_conv_bn(model)
    assert not remaining_batchnorms(model)
    wrapped = pcdet_ext.quantize_sparse_model(model, load_quant_config(None))
    assert len(wrapped) == 25 + 5 + 1 + 73
    units = pcdet_ext.sparse_units(model)
    assert len(units) == 56 and sum(k.value == "head_branch" for k in units.values()) == 36
    coords = torch.unique(torch.randint(0, 40, (2000, 3)), dim=0)
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords * torch.tensor([1, 30, 30])], dim=1)
    batch = {"voxels": torch.rand(len(coords), 10, 5), "voxel_num_points": torch.full((len(coords),), 10.0),
             "voxel_coords": coords.float(), "batch_size": 1}
    model = model.cuda().eval()
    with torch.no_grad():
        assert len(head_outputs(model, batch_on(batch, "cuda"))) == 36
