"""Exact rotated-box IoU and NMS on CPU (:mod:`pcdet_ext.rotated_boxes`, :mod:`pcdet_ext.iou3d_cpu`
and the ``iou3d_nms_cuda`` stand-in), against hand-computed cases and brute-force references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcdet_ext import iou3d_cpu
from pcdet_ext import rotated_boxes as rb
from pcdet_ext.standins import iou3d_nms_cuda


def box(x: float, y: float, z: float, dx: float, dy: float, dz: float, heading: float) -> list[float]:
    return [x, y, z, dx, dy, dz, heading]


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# A brute-force reference by another algorithm: Sutherland-Hodgman clipping of one quadrilateral
# by the other's four half-planes, in plain Python floats.
def _clip_area(subject: list[tuple[float, float]], clip: list[tuple[float, float]]) -> float:
    def side(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    poly = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        out: list[tuple[float, float]] = []
        for j in range(len(poly)):
            p, q = poly[j], poly[(j + 1) % len(poly)]
            sp, sq = side(p, a, b), side(q, a, b)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        poly = out
        if not poly:
            return 0.0
    return 0.5 * abs(sum(poly[k][0] * poly[(k + 1) % len(poly)][1] - poly[(k + 1) % len(poly)][0] * poly[k][1]
                         for k in range(len(poly))))


def _corners_py(b: list[float]) -> list[tuple[float, float]]:
    x, y, _, dx, dy, _, h = b
    c, s = math.cos(h), math.sin(h)
    return [(x + u * c - v * s, y + u * s + v * c)
            for u, v in ((dx / 2, dy / 2), (-dx / 2, dy / 2), (-dx / 2, -dy / 2), (dx / 2, -dy / 2))]


def ref_iou_bev(a: list[float], b: list[float]) -> float:
    inter = _clip_area(_corners_py(a), _corners_py(b))
    return inter / max(a[3] * a[4] + b[3] * b[4] - inter, 1e-8)


def ref_iou_3d(a: list[float], b: list[float]) -> float:
    inter = _clip_area(_corners_py(a), _corners_py(b))
    h = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    vol = inter * h
    return vol / max(a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - vol, 1e-6)


def ref_nms(rows: list[list[float]], thresh: float) -> list[int]:
    """Greedy NMS over score-sorted boxes with the reference IoU."""
    keep: list[int] = []
    for i in range(len(rows)):
        if all(ref_iou_bev(rows[k], rows[i]) <= thresh for k in keep):
            keep.append(i)
    return keep


def random_boxes(n: int, seed: int, spread: float = 6.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    low = torch.tensor([-spread, -spread, -1.0, 0.2, 0.2, 0.3, -math.pi])
    high = torch.tensor([spread, spread, 1.0, 5.0, 3.0, 2.5, math.pi])
    return low + torch.rand(n, 7, generator=gen) * (high - low)


@pytest.mark.parametrize("heading", [0.0, 0.3, math.pi / 4, -2.0, math.pi])
def test_identical_boxes_have_iou_one(heading: float) -> None:
    b = boxes(box(3.0, -2.0, 0.5, 4.2, 1.8, 1.6, heading))
    assert rb.iou_bev(b, b).item() == pytest.approx(1.0, abs=1e-12)
    assert rb.iou_3d(b, b).item() == pytest.approx(1.0, abs=1e-12)


def test_disjoint_and_touching_boxes_have_iou_zero() -> None:
    a = boxes(box(0, 0, 0, 2, 2, 2, 0))
    far = boxes(box(10, 10, 0, 2, 2, 2, 0.7))
    near_rotated = boxes(box(2.5, 0, 0, 2, 2, 2, math.pi / 4))  # circles meet, squares do not (1 < 2.5 - sqrt 2)
    touching = boxes(box(2, 0, 0, 2, 2, 2, 0))  # shares the edge x = 1
    for other in (far, near_rotated, touching):
        assert rb.iou_bev(a, other).item() == pytest.approx(0.0, abs=1e-12)
        assert rb.iou_3d(a, other).item() == pytest.approx(0.0, abs=1e-12)


def test_square_rotated_45_degrees_against_axis_aligned() -> None:
    # Side 2: each corner of the rotated square pokes out of the other by a right isosceles
    # triangle of legs sqrt(2) - 1, so the overlap is 4 - 4 (sqrt(2) - 1)^2 = 8 (sqrt(2) - 1).
    a = boxes(box(0, 0, 0, 2, 2, 1, 0))
    b = boxes(box(0, 0, 0, 2, 2, 1, math.pi / 4))
    overlap = 8 * (math.sqrt(2) - 1)
    assert rb.overlap_bev(a, b).item() == pytest.approx(overlap, rel=1e-12)
    assert rb.iou_bev(a, b).item() == pytest.approx(overlap / (8 - overlap), rel=1e-12)


def test_half_overlapping_square_and_contained_box() -> None:
    a = boxes(box(0, 0, 0, 2, 2, 1, 0))
    shifted = boxes(box(1, 0, 0, 2, 2, 1, 0))  # overlap 1 x 2
    inner = boxes(box(0.1, 0.2, 0, 0.5, 0.3, 1, 1.1))  # inside a, any heading
    assert rb.iou_bev(a, shifted).item() == pytest.approx(2 / 6, rel=1e-12)
    assert rb.overlap_bev(a, inner).item() == pytest.approx(0.5 * 0.3, rel=1e-12)


def test_heading_turns_counter_clockwise_as_the_kernel() -> None:
    # A long thin box at +45 degrees reaches (1.2, 1.2), not (1.2, -1.2).
    long = boxes(box(0, 0, 0, 4, 0.2, 1, math.pi / 4))
    up, down = boxes(box(1.2, 1.2, 0, 0.5, 0.5, 1, 0)), boxes(box(1.2, -1.2, 0, 0.5, 0.5, 1, 0))
    assert rb.overlap_bev(long, up).item() > 0.05
    assert rb.overlap_bev(long, down).item() == 0.0
    # 2 x 1 turned by 90 degrees is 1 x 2.
    assert rb.iou_bev(boxes(box(0, 0, 0, 2, 1, 1, math.pi / 2)), boxes(box(0, 0, 0, 1, 2, 1, 0))).item() == \
        pytest.approx(1.0, abs=1e-6)  # float32 pi / 2


def test_3d_iou_uses_the_height_overlap() -> None:
    a = boxes(box(0, 0, 0.0, 2, 2, 2, 0))
    b = boxes(box(0, 0, 1.0, 2, 2, 2, 0))  # z in [0, 2] against [-1, 1]: height overlap 1
    assert rb.iou_bev(a, b).item() == pytest.approx(1.0)
    assert rb.iou_3d(a, b).item() == pytest.approx(4 / (8 + 8 - 4), rel=1e-12)
    above = boxes(box(0, 0, 3.0, 2, 2, 2, 0))
    assert rb.iou_3d(a, above).item() == 0.0


def test_random_pairs_match_polygon_clipping() -> None:
    a, b = random_boxes(80, seed=1, spread=3.0), random_boxes(70, seed=2, spread=3.0)
    got_bev, got_3d = rb.iou_bev(a, b), rb.iou_3d(a, b)
    ra, rb_ = a.double().tolist(), b.double().tolist()
    want_bev = torch.tensor([[ref_iou_bev(p, q) for q in rb_] for p in ra], dtype=torch.float64)
    want_3d = torch.tensor([[ref_iou_3d(p, q) for q in rb_] for p in ra], dtype=torch.float64)
    assert (want_bev > 0).sum() > 500  # the draw overlaps a lot: the test exercises the clipping
    torch.testing.assert_close(got_bev, want_bev, atol=1e-9, rtol=0)
    torch.testing.assert_close(got_3d, want_3d, atol=1e-9, rtol=0)
    torch.testing.assert_close(rb.paired_iou_3d(a[:70], b), want_3d.diagonal(), atol=1e-9, rtol=0)


def test_shapely_agrees_when_installed() -> None:
    geometry = pytest.importorskip("shapely.geometry", reason="shapely is not installed (optional cross-check)")
    a, b = random_boxes(40, seed=5, spread=2.0), random_boxes(40, seed=6, spread=2.0)
    ca, cb = rb.bev_corners(a), rb.bev_corners(b)
    want = torch.tensor([geometry.Polygon(ca[i].tolist()).intersection(geometry.Polygon(cb[i].tolist())).area
                         for i in range(40)], dtype=torch.float64)
    torch.testing.assert_close(rb.paired_overlap_bev(a, b), want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("thresh", [0.05, 0.2, 0.5])
def test_nms_matches_brute_force(thresh: float) -> None:
    cand = random_boxes(120, seed=3, spread=4.0)
    scores = torch.rand(120, generator=torch.Generator().manual_seed(4))
    order = scores.sort(descending=True)[1]
    want = [int(order[k]) for k in ref_nms(cand[order].double().tolist(), thresh)]
    assert 5 < len(want) < 120
    kept, second = iou3d_cpu.nms_gpu(cand, scores, thresh)
    assert second is None and kept.tolist() == want
    keep = torch.zeros(120, dtype=torch.long)
    count = iou3d_nms_cuda.nms_gpu(cand[order], keep, thresh)
    assert order[keep[:count]].tolist() == want


def test_nms_pre_maxsize_and_axis_aligned_nms() -> None:
    cand = random_boxes(60, seed=7, spread=3.0)
    scores = torch.linspace(1, 0, 60)  # already sorted
    kept, _ = iou3d_cpu.nms_gpu(cand, scores, 0.1, pre_maxsize=20)
    assert kept.tolist() == ref_nms(cand[:20].double().tolist(), 0.1)
    flat = cand.clone()
    flat[:, 6] = 0  # without headings the axis-aligned rule is the rotated one
    normal, _ = iou3d_cpu.nms_normal_gpu(cand, scores, 0.1)
    assert normal.tolist() == ref_nms(flat.double().tolist(), 0.1)
    assert normal.tolist() != kept.tolist()


def test_openpcdet_signatures_and_result_types() -> None:
    a, b = random_boxes(5, seed=8), random_boxes(4, seed=9)
    assert iou3d_cpu.boxes_iou_bev(a, b).dtype == torch.float32
    assert iou3d_cpu.boxes_iou3d_gpu(a, b).shape == (5, 4)
    assert iou3d_cpu.boxes_aligned_iou3d_gpu(a[:4], b).shape == (4, 1)
    assert iou3d_cpu.paired_boxes_iou3d_gpu(a[:4], b).shape == (4,)
    as_numpy = iou3d_cpu.boxes_bev_iou_cpu(a.numpy(), b.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, iou3d_cpu.boxes_iou_bev(a, b).numpy())
    out = torch.zeros(5, 4)
    iou3d_nms_cuda.boxes_overlap_bev_gpu(a, b, out)
    torch.testing.assert_close(out, rb.overlap_bev(a, b).float())
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        rb.iou_bev(torch.zeros(3, 5), a)
