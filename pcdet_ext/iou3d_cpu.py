"""CPU versions of the functions of OpenPCDet's ``pcdet/ops/iou3d_nms/iou3d_nms_utils.py``.

Same names, arguments and results as OpenPCDet's (which allocate ``torch.cuda.FloatTensor`` and
call the compiled ``iou3d_nms_cuda``), computed by :mod:`pcdet_ext.rotated_boxes` with the exact
rotated-box geometry. Results are float32 on the device of the first input, as the originals.
:func:`pcdet_ext.openpcdet_cpu.apply_openpcdet_cpu_patches` puts them into that module when
there is no CUDA.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pcdet_ext import rotated_boxes as rb


def _like(values: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return values.to(ref.device, torch.float32)


def boxes_bev_iou_cpu(boxes_a: Any, boxes_b: Any) -> Any:
    """Rotated BEV IoU ``(N, M)``; numpy in, numpy out."""
    is_numpy = isinstance(boxes_a, np.ndarray)
    a, b = torch.as_tensor(np.asarray(boxes_a)) if is_numpy else boxes_a, torch.as_tensor(boxes_b)
    iou = rb.iou_bev(a, b).float()
    return iou.numpy() if is_numpy else iou


def boxes_iou_bev(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated BEV IoU ``(N, M)``."""
    return _like(rb.iou_bev(boxes_a, boxes_b), boxes_a)


def boxes_iou3d_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated 3D IoU ``(N, M)``."""
    return _like(rb.iou_3d(boxes_a, boxes_b), boxes_a)


def boxes_aligned_iou3d_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated 3D IoU of ``boxes_a[i]`` and ``boxes_b[i]``, ``(N, 1)``."""
    return _like(rb.paired_iou_3d(boxes_a, boxes_b), boxes_a).view(-1, 1)


def paired_boxes_iou3d_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated 3D IoU of ``boxes_a[i]`` and ``boxes_b[i]``, ``(N,)``."""
    return _like(rb.paired_iou_3d(boxes_a, boxes_b), boxes_a).view(-1)


def nms_gpu(boxes: torch.Tensor, scores: torch.Tensor, thresh: float, pre_maxsize: int | None = None,
            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Rotated BEV NMS: indices into ``boxes`` of the kept boxes, by descending score, and None."""
    order = scores.sort(0, descending=True)[1]
    if pre_maxsize is not None:
        order = order[:pre_maxsize]
    keep = rb.nms_rotated(boxes[order], thresh).to(order.device)
    return order[keep].contiguous(), None


def nms_normal_gpu(boxes: torch.Tensor, scores: torch.Tensor, thresh: float,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Axis-aligned BEV NMS (the heading ignored), as :func:`nms_gpu` returns it."""
    order = scores.sort(0, descending=True)[1]
    keep = rb.nms_axis_aligned(boxes[order], thresh).to(order.device)
    return order[keep].contiguous(), None


# The functions of iou3d_nms_utils replaced without CUDA.
FUNCTIONS = {f.__name__: f for f in (boxes_bev_iou_cpu, boxes_iou_bev, boxes_iou3d_gpu, boxes_aligned_iou3d_gpu,
                                     paired_boxes_iou3d_gpu, nms_gpu, nms_normal_gpu)}

__all__ = [
    "FUNCTIONS",
    "boxes_aligned_iou3d_gpu",
    "boxes_bev_iou_cpu",
    "boxes_iou3d_gpu",
    "boxes_iou_bev",
    "nms_gpu",
    "nms_normal_gpu",
    "paired_boxes_iou3d_gpu",
]
