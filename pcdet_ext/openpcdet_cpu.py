"""Runtime patches that let the real OpenPCDet's VoxelNeXt build, run and evaluate without CUDA.

Two failures, read from OpenPCDet's sources (``open-mmlab/OpenPCDet``, master):

* **``.cuda()`` in OpenPCDet's own code.** ``VoxelNeXtHead.__init__`` puts the point-cloud range,
  voxel size and rectifier on the GPU (``torch.Tensor(...).cuda()``) and
  ``generate_predicted_boxes`` does the same with ``POST_CENTER_LIMIT_RANGE``; ``nms_gpu`` moves
  its kept indices with ``.cuda()``; losses and box coders do it in their constructors. Without a
  driver each raises "Found no NVIDIA driver". The patch wraps ``torch.Tensor.cuda``: a call made
  from a module of the ``pcdet`` package returns the tensor where it is (on CPU); any other caller
  gets torch's own ``cuda()``.
* **Rotated IoU and NMS are compiled CUDA ops.** ``iou3d_nms_utils.boxes_iou3d_gpu`` (called by
  ``Detector3DTemplate.generate_recall_record`` during evaluation), ``boxes_iou_bev``, ``nms_gpu``
  (the head's NMS) and the rest allocate ``torch.cuda.FloatTensor`` and call ``iou3d_nms_cuda``.
  The patch replaces them in the loaded ``pcdet.ops.iou3d_nms.iou3d_nms_utils`` module with
  :mod:`pcdet_ext.iou3d_cpu` (exact rotated-box geometry). Callers look them up as module
  attributes (``iou3d_nms_utils.nms_gpu(...)``, ``getattr(iou3d_nms_utils, NMS_TYPE)``), so they
  get the CPU versions.

Applied by :func:`pcdet_ext.apply_cpu_patches` once ``pcdet`` is imported; nothing is patched
while ``torch.cuda.is_available()``.
"""
from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger("pcdet_ext")

_MARK = "_pcdet_ext_cpu_patch"
IOU3D_UTILS = "pcdet.ops.iou3d_nms.iou3d_nms_utils"
TENSOR_CUDA_PATCH = "Tensor.cuda() called from pcdet.* -> stays on CPU"
IOU3D_PATCH = "pcdet iou3d_nms_utils -> exact rotated IoU / NMS on CPU"


def _called_from_pcdet(depth: int = 2) -> bool:
    """Whether the function ``depth`` frames up runs code of a ``pcdet`` module."""
    name = sys._getframe(depth).f_globals.get("__name__", "")
    return name == "pcdet" or name.startswith("pcdet.")


def _cuda_stays_on_cpu(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(original)
    def cuda(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if _called_from_pcdet():
            return self  # OpenPCDet asked for the GPU; there is none, so the tensor stays here
        return original(self, *args, **kwargs)

    setattr(cuda, _MARK, True)
    return cuda


def _patch_tensor_cuda() -> bool:
    if getattr(torch.Tensor.cuda, _MARK, False):
        return False
    torch.Tensor.cuda = _cuda_stays_on_cpu(torch.Tensor.cuda)  # type: ignore[method-assign]
    return True


def _patch_iou3d_utils() -> bool:
    from pcdet_ext.iou3d_cpu import FUNCTIONS

    module = sys.modules.get(IOU3D_UTILS)
    if module is None or getattr(module, _MARK, False):
        return False
    for name, fn in FUNCTIONS.items():
        setattr(module, name, fn)
    setattr(module, _MARK, True)
    return True


def openpcdet_patches_applied() -> list[str]:
    """The OpenPCDet patches now in effect."""
    applied = []
    if getattr(torch.Tensor.cuda, _MARK, False):
        applied.append(TENSOR_CUDA_PATCH)
    if getattr(sys.modules.get(IOU3D_UTILS), _MARK, False):
        applied.append(IOU3D_PATCH)
    return applied


def apply_openpcdet_cpu_patches() -> list[str]:
    """Patches the imported OpenPCDet for CPU-only runs (no-op with CUDA, or before ``pcdet`` is
    imported); idempotent. Returns the names of the patches in effect."""
    if torch.cuda.is_available() or "pcdet" not in sys.modules:
        return []
    new = [name for name, patch in ((TENSOR_CUDA_PATCH, _patch_tensor_cuda), (IOU3D_PATCH, _patch_iou3d_utils))
           if patch()]
    if new:
        logger.info("no CUDA: patched OpenPCDet for CPU (%s)", "; ".join(new))
    return openpcdet_patches_applied()


__all__ = ["IOU3D_PATCH", "TENSOR_CUDA_PATCH", "apply_openpcdet_cpu_patches", "openpcdet_patches_applied"]
