"""Rotated 3D boxes on CPU: exact bird's-eye-view overlap, BEV / 3D IoU and rotated NMS, the
quantities OpenPCDet's compiled ``iou3d_nms`` op computes on the GPU.

Boxes are OpenPCDet's ``(x, y, z, dx, dy, dz, heading)``: a corner is the centre plus
``R(heading) @ (+-dx/2, +-dy/2)`` with ``R`` the counter-clockwise rotation (the convention of
``iou3d_nms_kernel.cu``'s ``rotate_around_center`` and of ``box_utils.boxes_to_corners_3d``), and
``z`` is the box centre.

The overlap of two convex quadrilaterals is a convex polygon whose vertices are the corners of
each box that lie inside the other and the points where their edges cross. Sorted by angle
around their mean, the shoelace formula gives its area (O'Rourke, *Computational Geometry in C*,
ch. 7, convex polygon intersection). Everything is vectorised over box pairs in float64, and only
pairs whose circumscribed circles meet are evaluated. The IoU and NMS rules follow the kernel:
``iou = overlap / max(area_a + area_b - overlap, 1e-8)`` in BEV; in 3D the overlap is multiplied by
the height overlap and divided by ``max(vol_a + vol_b - overlap_3d, 1e-6)``; NMS keeps a box and
drops every later (lower-scored) box whose BEV IoU with it is ``> thresh``.
"""
from __future__ import annotations

import numpy as np
import torch

BEV_EPS = 1e-8  # the kernel's EPS in iou_bev / iou_normal
VOL_EPS = 1e-6  # iou3d_nms_utils' clamp of the 3D union
_INSIDE_TOL = 1e-9  # m^2: a corner on the other box's edge counts as inside
_PAIR_CHUNK = 1 << 16  # box pairs evaluated at once (about 30 MB of float64 work space)
# Corners of the unit box in counter-clockwise order, as multiples of (dx, dy).
_UNIT_CORNERS = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]], dtype=torch.float64)


def _as_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes`` as a float64 CPU ``(N, 7)`` tensor; a ValueError for another shape."""
    if boxes.dim() != 2 or boxes.shape[1] < 7:
        raise ValueError(f"boxes must be (N, 7) [x, y, z, dx, dy, dz, heading]; got shape {tuple(boxes.shape)}")
    return boxes[:, :7].detach().to("cpu", torch.float64)


def bev_corners(boxes: torch.Tensor) -> torch.Tensor:
    """The four BEV corners of each box, counter-clockwise: ``(N, 4, 2)``."""
    boxes = _as_boxes(boxes)
    local = _UNIT_CORNERS[None] * boxes[:, None, 3:5]  # (N, 4, 2)
    cos, sin = torch.cos(boxes[:, 6])[:, None], torch.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin + boxes[:, None, 0]
    y = local[..., 0] * sin + local[..., 1] * cos + boxes[:, None, 1]
    return torch.stack([x, y], dim=-1)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The z component of ``u x v`` over the last dimension (size 2)."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _inside(points: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
    """Whether each of ``points`` (P, K, 2) lies in the counter-clockwise quadrilateral ``poly``
    (P, 4, 2), its boundary included: ``(P, K)``."""
    edges = poly.roll(-1, dims=1) - poly  # (P, 4, 2)
    rel = points[:, :, None, :] - poly[:, None, :, :]  # (P, K, 4, 2)
    return (_cross(edges[:, None], rel) >= -_INSIDE_TOL).all(dim=-1)


def _edge_crossings(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each edge of ``a`` crosses each edge of ``b`` (both (P, 4, 2)): points (P, 16, 2) and
    whether the two segments do meet there (parallel edges never do)."""
    pa, da = a[:, :, None, :], (a.roll(-1, dims=1) - a)[:, :, None, :]  # edge i of a: pa + t * da
    pb, db = b[:, None, :, :], (b.roll(-1, dims=1) - b)[:, None, :, :]  # edge j of b: pb + u * db
    denom = _cross(da, db)  # (P, 4, 4)
    gap = pb - pa
    parallel = denom.abs() < 1e-12
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = _cross(gap, db) / safe
    u = _cross(gap, da) / safe
    hit = ~parallel & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    points = pa + t[..., None] * da
    return points.reshape(len(a), 16, 2), hit.reshape(len(a), 16)


def _convex_area(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Area of the convex hull of the valid ``points`` (P, K, 2) when they are its vertices (or
    lie on its boundary): sorted by angle around their mean, then the shoelace formula."""
    count = valid.sum(dim=1)
    weights = valid.to(points.dtype)[..., None]
    mean = (points * weights).sum(dim=1) / count.clamp(min=1)[:, None]
    rel = points - mean[:, None]
    angle = torch.atan2(rel[..., 1], rel[..., 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid points sort last
    order = angle.argsort(dim=1)
    rel = rel.gather(1, order[..., None].expand_as(rel))
    valid = valid.gather(1, order)
    # Invalid points become copies of the first vertex: their edges have no area.
    rel = torch.where(valid[..., None], rel, rel[:, :1])
    area = 0.5 * _cross(rel, rel.roll(-1, dims=1)).sum(dim=1)
    return torch.where(count >= 3, area.abs(), torch.zeros_like(area))


def paired_overlap_bev(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """BEV overlap area of ``boxes_a[i]`` and ``boxes_b[i]`` (both (P, 7)): ``(P,)`` float64."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    if len(a) != len(b):
        raise ValueError(f"paired boxes need as many boxes on each side; got {len(a)} and {len(b)}")
    out = torch.zeros(len(a), dtype=torch.float64)
    for start in range(0, len(a), _PAIR_CHUNK):
        ca = bev_corners(a[start:start + _PAIR_CHUNK])
        cb = bev_corners(b[start:start + _PAIR_CHUNK])
        origin = ca.mean(dim=1, keepdim=True)  # work near 0 for precision
        ca, cb = ca - origin, cb - origin
        cross, hit = _edge_crossings(ca, cb)
        points = torch.cat([ca, cb, cross], dim=1)
        valid = torch.cat([_inside(ca, cb), _inside(cb, ca), hit], dim=1)
        out[start:start + len(ca)] = _convex_area(points, valid)
    return out


def overlap_bev(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """BEV overlap area of every box of ``boxes_a`` (N, 7) with every box of ``boxes_b`` (M, 7):
    ``(N, M)`` float64. Pairs whose circumscribed circles are apart are 0 without clipping."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    if not len(a) or not len(b):
        return out
    radius_a = 0.5 * torch.hypot(a[:, 3], a[:, 4])
    radius_b = 0.5 * torch.hypot(b[:, 3], b[:, 4])
    dist = torch.cdist(a[:, :2], b[:, :2])
    ia, ib = torch.nonzero(dist <= radius_a[:, None] + radius_b[None] + 1e-9, as_tuple=True)
    out[ia, ib] = paired_overlap_bev(a[ia], b[ib])
    return out


def _bev_area(boxes: torch.Tensor) -> torch.Tensor:
    return boxes[:, 3] * boxes[:, 4]


def iou_bev(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated BEV IoU ``(N, M)`` float64, as the kernel's ``iou_bev``."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    inter = overlap_bev(a, b)
    union = _bev_area(a)[:, None] + _bev_area(b)[None] - inter
    return inter / union.clamp(min=BEV_EPS)


def _height_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Overlap of the z extents of ``a`` (N, 1, 7) / ``b`` (1, M, 7) broadcast (or paired)."""
    top = torch.minimum(a[..., 2] + a[..., 5] / 2, b[..., 2] + b[..., 5] / 2)
    bottom = torch.maximum(a[..., 2] - a[..., 5] / 2, b[..., 2] - b[..., 5] / 2)
    return (top - bottom).clamp(min=0)


def _iou_from_overlap(inter_bev: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = inter_bev * _height_overlap(a, b)
    vol_a = a[..., 3] * a[..., 4] * a[..., 5]
    vol_b = b[..., 3] * b[..., 4] * b[..., 5]
    return inter / (vol_a + vol_b - inter).clamp(min=VOL_EPS)


def iou_3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated 3D IoU ``(N, M)`` float64, as ``iou3d_nms_utils.boxes_iou3d_gpu``."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    return _iou_from_overlap(overlap_bev(a, b), a[:, None], b[None])


def paired_iou_3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Rotated 3D IoU of ``boxes_a[i]`` and ``boxes_b[i]``: ``(P,)`` float64."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    return _iou_from_overlap(paired_overlap_bev(a, b), a, b)


def iou_bev_axis_aligned(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """BEV IoU ignoring the heading ``(N, M)``, as the kernel's ``iou_normal``."""
    a, b = _as_boxes(boxes_a)[:, None], _as_boxes(boxes_b)[None]
    width = (torch.minimum(a[..., 0] + a[..., 3] / 2, b[..., 0] + b[..., 3] / 2)
             - torch.maximum(a[..., 0] - a[..., 3] / 2, b[..., 0] - b[..., 3] / 2)).clamp(min=0)
    depth = (torch.minimum(a[..., 1] + a[..., 4] / 2, b[..., 1] + b[..., 4] / 2)
             - torch.maximum(a[..., 1] - a[..., 4] / 2, b[..., 1] - b[..., 4] / 2)).clamp(min=0)
    inter = width * depth
    return inter / (a[..., 3] * a[..., 4] + b[..., 3] * b[..., 4] - inter).clamp(min=BEV_EPS)


def greedy_nms(iou: torch.Tensor, thresh: float) -> torch.Tensor:
    """Greedy NMS over boxes already sorted by descending score: box ``i`` is kept unless an
    earlier kept box has IoU ``> thresh`` with it. Returns the kept positions (int64, ascending)."""
    over = (iou > thresh).cpu().numpy()
    suppressed = np.zeros(len(over), dtype=bool)
    keep = []
    for i in range(len(over)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return torch.tensor(keep, dtype=torch.int64)


def nms_rotated(boxes: torch.Tensor, thresh: float) -> torch.Tensor:
    """Rotated BEV NMS of boxes sorted by descending score (the compiled ``nms_gpu``)."""
    return greedy_nms(iou_bev(boxes, boxes), thresh)


def nms_axis_aligned(boxes: torch.Tensor, thresh: float) -> torch.Tensor:
    """Axis-aligned BEV NMS of boxes sorted by descending score (the compiled ``nms_normal_gpu``)."""
    return greedy_nms(iou_bev_axis_aligned(boxes, boxes), thresh)


__all__ = [
    "bev_corners",
    "greedy_nms",
    "iou_3d",
    "iou_bev",
    "iou_bev_axis_aligned",
    "nms_axis_aligned",
    "nms_rotated",
    "overlap_bev",
    "paired_iou_3d",
    "paired_overlap_bev",
]
