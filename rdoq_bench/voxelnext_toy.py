"""A small VoxelNeXt-shaped sparse detector on synthetic LiDAR scenes, built from spconv alone.

Test and bench helper for the OpenPCDet side without OpenPCDet (``import rdoq_bench.voxelnext_toy
as toy``); this module gathers the public names of its four parts:

* :mod:`rdoq_bench.voxelnext_model`: the model, whose modules mirror the structure and the names of
  OpenPCDet's ``VoxelResBackBone8xVoxelNeXt`` and ``VoxelNeXtHead`` (so the adapter,
  ``pcdet_ext.units``, recognizes both the same way), the classes and the voxel grid;
* :mod:`rdoq_bench.voxelnext_scenes`: ray-cast LiDAR scenes, voxelized as MeanVFE, and batching;
* :mod:`rdoq_bench.voxelnext_train`: targets, losses and a short CPU training routine;
* :mod:`rdoq_bench.voxelnext_eval`: decoding and the BEV detection metric (center-distance AP).

Everything is deterministic given the seed. Importing it imports spconv.
"""
from __future__ import annotations

from rdoq_bench.voxelnext_eval import NMS_RADIUS, average_precision, bev_map, decode, evaluate
from rdoq_bench.voxelnext_model import (
    CHANNELS,
    CLASS_NAMES,
    CLASS_NAMES_EACH_HEAD,
    FEATURE_STRIDE,
    GRID_SIZE,
    HEAD_DICT,
    NARROW,
    OUT_CHANNEL,
    POINT_CLOUD_RANGE,
    VOXEL_SIZE,
    SeparateHead,
    SparseBasicBlock,
    VoxelNeXtHead,
    VoxelNeXtToy,
    VoxelResBackBone8xVoxelNeXt,
    build_toy,
    conv_block,
    head_class_ids,
    head_outputs,
    run_model,
    set_bn_statistics,
    site_centers,
)
from rdoq_bench.voxelnext_scenes import (
    CLASS_INTENSITY,
    CLASS_PROBS,
    CLASS_SIZES,
    MIN_POINTS_PER_BOX,
    SENSOR_HEIGHT,
    Scene,
    batches_of,
    collate,
    make_scene,
    make_scenes,
)
from rdoq_bench.voxelnext_train import assign_targets, detection_loss, focal_loss, train_toy

__all__ = [
    "CHANNELS", "CLASS_INTENSITY", "CLASS_NAMES", "CLASS_NAMES_EACH_HEAD", "CLASS_PROBS", "CLASS_SIZES",
    "FEATURE_STRIDE", "GRID_SIZE", "HEAD_DICT", "MIN_POINTS_PER_BOX", "NARROW", "NMS_RADIUS", "OUT_CHANNEL",
    "POINT_CLOUD_RANGE", "SENSOR_HEIGHT", "VOXEL_SIZE", "Scene", "SeparateHead", "SparseBasicBlock",
    "VoxelNeXtHead", "VoxelNeXtToy", "VoxelResBackBone8xVoxelNeXt", "assign_targets", "average_precision",
    "batches_of", "bev_map", "build_toy", "collate", "conv_block", "decode", "detection_loss", "evaluate",
    "focal_loss", "head_class_ids", "head_outputs", "make_scene", "make_scenes", "run_model",
    "set_bn_statistics", "site_centers", "train_toy",
]
