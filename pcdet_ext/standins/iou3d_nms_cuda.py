"""The functions of OpenPCDet's compiled ``iou3d_nms_cuda`` (``iou3d_nms_api.cpp``) on CPU.

Same calling convention as the op: results are written into the ``out`` / ``keep`` tensors the
caller allocates, and the NMS functions return how many boxes they kept. Boxes are ``(N, 7)``
``(x, y, z, dx, dy, dz, heading)``; NMS boxes come sorted by descending score. The geometry is
:mod:`pcdet_ext.rotated_boxes` (exact rotated rectangles).
"""
from __future__ import annotations

import torch

from pcdet_ext import rotated_boxes as rb


def _write(out: torch.Tensor, values: torch.Tensor) -> None:
    out.copy_(values.reshape(out.shape).to(out.device, out.dtype))


def boxes_overlap_bev_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, M)`` = rotated BEV overlap areas."""
    _write(out, rb.overlap_bev(boxes_a, boxes_b))


def boxes_aligned_overlap_bev_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, 1)`` = rotated BEV overlap of ``boxes_a[i]`` and ``boxes_b[i]``."""
    _write(out, rb.paired_overlap_bev(boxes_a, boxes_b))


def paired_boxes_overlap_bev_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, 1)`` = rotated BEV overlap of ``boxes_a[i]`` and ``boxes_b[i]``."""
    _write(out, rb.paired_overlap_bev(boxes_a, boxes_b))


def boxes_iou_bev_gpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, M)`` = rotated BEV IoU."""
    _write(out, rb.iou_bev(boxes_a, boxes_b))


def boxes_iou_bev_cpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, M)`` = rotated BEV IoU."""
    _write(out, rb.iou_bev(boxes_a, boxes_b))


def boxes_aligned_iou_bev_cpu(boxes_a: torch.Tensor, boxes_b: torch.Tensor, out: torch.Tensor) -> None:
    """``out (N, 1)`` = rotated BEV IoU of ``boxes_a[i]`` and ``boxes_b[i]``."""
    a, b = boxes_a.double(), boxes_b.double()
    inter = rb.paired_overlap_bev(a, b)
    union = a[:, 3] * a[:, 4] + b[:, 3] * b[:, 4] - inter
    _write(out, inter / union.clamp(min=rb.BEV_EPS))


def nms_gpu(boxes: torch.Tensor, keep: torch.Tensor, thresh: float) -> int:
    """Rotated NMS of score-sorted ``boxes``: ``keep[:k]`` = kept positions; returns ``k``."""
    kept = rb.nms_rotated(boxes, thresh)
    keep[:len(kept)] = kept.to(keep.device, keep.dtype)
    return len(kept)


def nms_normal_gpu(boxes: torch.Tensor, keep: torch.Tensor, thresh: float) -> int:
    """Axis-aligned NMS of score-sorted ``boxes``: ``keep[:k]`` = kept positions; returns ``k``."""
    kept = rb.nms_axis_aligned(boxes, thresh)
    keep[:len(kept)] = kept.to(keep.device, keep.dtype)
    return len(kept)
