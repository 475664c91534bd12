"""Synthetic LiDAR scenes for the VoxelNeXt-shaped toy (:mod:`rdoq_bench.voxelnext_model`).

A sensor at the origin casts rays (32 beams, 0.4 deg azimuth steps) onto a ground plane,
labelled boxes of three classes and unlabelled clutter; the nearest hit per ray, with range noise
and dropped returns, gives points on visible faces only and a density that falls off with range.
Points are voxelized with spconv's CPU ``PointToVoxel`` (0.2 m voxels over +-20 m) and averaged per
voxel (as MeanVFE). Everything is deterministic given the seed. :func:`collate` makes the
OpenPCDet-like batch dicts the model reads.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from spconv.pytorch.utils import PointToVoxel
from torch import Tensor

from rdoq_bench.voxelnext_model import CLASS_NAMES, POINT_CLOUD_RANGE, VOXEL_SIZE

CLASS_SIZES = {"car": (4.2, 1.8, 1.5), "truck": (7.5, 2.5, 3.0), "pedestrian": (0.7, 0.7, 1.75)}  # dx, dy, dz
CLASS_PROBS = (0.5, 0.2, 0.3)
CLASS_INTENSITY = {"car": 0.6, "truck": 0.45, "pedestrian": 0.3}
SENSOR_HEIGHT = 1.8  # the ground plane is at z = -SENSOR_HEIGHT
MIN_POINTS_PER_BOX = 5  # boxes with fewer points are not ground truth (as nuScenes' evaluation)


@dataclass
class Scene:
    """One LiDAR sweep: points ``[N, 4]`` (x, y, z, intensity), boxes ``[K, 8]`` (x, y, z, dx, dy,
    dz, yaw, label with 1-based class ids; objects with at least ``MIN_POINTS_PER_BOX`` points), and
    its voxels (mean features, (z, y, x) coords)."""

    points: Tensor
    gt_boxes: Tensor
    voxel_features: Tensor
    voxel_coords: Tensor


def _rays(rng: np.random.Generator) -> np.ndarray:
    elevation = np.deg2rad(np.linspace(-25.0, 8.0, 32))
    azimuth = np.deg2rad(np.arange(0.0, 360.0, 0.4)) + rng.uniform(0, np.deg2rad(0.4))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    return dirs[rng.random(len(dirs)) > 0.1]  # dropped returns


def _box_hits(dirs: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit of each ray (from the origin) with an upright box; inf if none."""
    x, y, z, dx, dy, dz, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> box frame
    origin = rot @ -np.array([x, y, z])
    d = dirs @ rot.T
    half = np.array([dx, dy, dz]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - origin) / d
        t2 = (half - origin) / d
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def _place_boxes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labelled boxes and unlabelled clutter, without BEV overlaps, inside the range."""
    boxes: list[np.ndarray] = []
    clutter: list[np.ndarray] = []
    taken: list[tuple[float, float, float]] = []
    ground = -SENSOR_HEIGHT

    def free(x: float, y: float, r: float) -> bool:
        return all((x - a) ** 2 + (y - b) ** 2 > (r + rr + 0.5) ** 2 for a, b, rr in taken) and x * x + y * y > (r + 2) ** 2

    num = int(rng.integers(6, 11))
    classes = list(rng.choice(len(CLASS_NAMES), size=num, p=CLASS_PROBS))
    classes[:3] = [0, 1, 2]  # every class in every scene
    for label in classes:
        size = np.array(CLASS_SIZES[CLASS_NAMES[label]]) * rng.uniform(0.9, 1.1, 3)
        r = float(np.hypot(size[0], size[1]) / 2)
        for _ in range(50):
            dist, az = rng.uniform(4.0, 17.0), rng.uniform(-np.pi, np.pi)
            x, y = dist * math.cos(az), dist * math.sin(az)
            if free(x, y, r) and max(abs(x), abs(y)) + r < 19.5:
                yaw = rng.uniform(-np.pi, np.pi)
                boxes.append(np.array([x, y, ground + size[2] / 2, *size, yaw, label + 1]))
                taken.append((x, y, r))
                break
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.integers(2)
        size = np.array([rng.uniform(3, 8), 0.3, rng.uniform(1.0, 2.5)]) if kind == 0 else np.array([0.3, 0.3, 3.0])
        r = float(np.hypot(size[0], size[1]) / 2)
        for _ in range(50):
            x, y = rng.uniform(-18, 18, 2)
            if free(x, y, r):
                clutter.append(np.array([x, y, ground + size[2] / 2, *size, rng.uniform(-np.pi, np.pi), 0]))
                taken.append((x, y, r))
                break
    return np.stack(boxes), np.stack(clutter) if clutter else np.zeros((0, 8))


def _voxelizer() -> PointToVoxel:
    return PointToVoxel(vsize_xyz=list(VOXEL_SIZE), coors_range_xyz=list(POINT_CLOUD_RANGE), num_point_features=4,
                        max_num_voxels=60000, max_num_points_per_voxel=5)


def make_scene(seed: int, voxelizer: PointToVoxel | None = None) -> Scene:
    """One deterministic scene from ``seed``."""
    rng = np.random.default_rng(seed)
    boxes, clutter = _place_boxes(rng)
    dirs = _rays(rng)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < 0, -SENSOR_HEIGHT / dirs[:, 2], np.inf)
    hits = [t_ground] + [_box_hits(dirs, b) for b in (*boxes, *clutter)]
    intensity = [0.12] + [CLASS_INTENSITY[CLASS_NAMES[int(b[7]) - 1]] for b in boxes] + [0.25] * len(clutter)
    t_all = np.stack(hits, axis=1)
    first = t_all.argmin(axis=1)
    t = t_all[np.arange(len(dirs)), first]
    keep = np.isfinite(t) & (t < 30.0)
    t, dirs, first = t[keep], dirs[keep], first[keep]
    t = t + rng.normal(0.0, 0.02, len(t))  # range noise
    pts = dirs * t[:, None]
    inten = np.clip(np.asarray(intensity)[first] + rng.normal(0.0, 0.05, len(t)), 0.0, 1.0)
    lo, hi = np.array(POINT_CLOUD_RANGE[:3]), np.array(POINT_CLOUD_RANGE[3:])
    inside = np.all((pts >= lo) & (pts < hi), axis=1)
    points = torch.from_numpy(np.concatenate([pts, inten[:, None]], axis=1)[inside]).float()
    hit_counts = np.bincount(first[inside], minlength=1 + len(boxes) + len(clutter))[1 : 1 + len(boxes)]
    boxes = boxes[hit_counts >= MIN_POINTS_PER_BOX]  # fully occluded objects are not ground truth
    voxels, coords, num = (voxelizer or _voxelizer())(points)
    features = voxels.sum(dim=1) / num.clamp(min=1).unsqueeze(1).to(voxels.dtype)  # MeanVFE
    return Scene(points, torch.from_numpy(boxes).float(), features.clone(), coords.long().clone())


def make_scenes(num: int, seed: int = 0) -> list[Scene]:
    """``num`` deterministic scenes (scene ``i`` from seed ``seed * 100003 + i``)."""
    voxelizer = _voxelizer()
    return [make_scene(seed * 100003 + i, voxelizer) for i in range(num)]


def collate(scenes: Sequence[Scene]) -> dict[str, Any]:
    """An OpenPCDet-like batch dict: ``voxel_features``, ``voxel_coords`` (b, z, y, x),
    ``batch_size`` and ``gt_boxes`` (``[B, K, 8]``, zero-padded)."""
    coords = [torch.cat([torch.full((len(s.voxel_coords), 1), b), s.voxel_coords], dim=1) for b, s in enumerate(scenes)]
    k = max(len(s.gt_boxes) for s in scenes)
    gt = torch.zeros(len(scenes), k, 8)
    for b, s in enumerate(scenes):
        gt[b, : len(s.gt_boxes)] = s.gt_boxes
    return {"voxel_features": torch.cat([s.voxel_features for s in scenes]), "voxel_coords": torch.cat(coords).int(),
            "batch_size": len(scenes), "gt_boxes": gt}


def batches_of(scenes: Sequence[Scene], batch_size: int) -> list[dict[str, Any]]:
    return [collate(scenes[i : i + batch_size]) for i in range(0, len(scenes), batch_size)]

