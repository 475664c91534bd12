"""A small VoxelNeXt-shaped sparse detector on synthetic LiDAR scenes, built from spconv alone.

Test helper (and bench helper) for the OpenPCDet side without OpenPCDet: the modules mirror the
structure and the names of OpenPCDet's ``VoxelResBackBone8xVoxelNeXt`` and ``VoxelNeXtHead``
(Chen et al., "VoxelNeXt", CVPR 2023) so the adapter (``pcdet_ext.units``) recognizes both the
same way, at a small scale:

* ``backbone_3d``: ``conv_input`` (SubMConv3d + BN1d + ReLU), ``conv1`` (SparseBasicBlocks),
  ``conv2`` .. ``conv6`` (a stride-2 SparseConv3d block, then SparseBasicBlocks), the sparse BEV
  map (``conv4`` sites plus ``conv5`` / ``conv6`` sites rescaled in place, z summed out per
  (batch, y, x)), ``conv_out`` (SparseConv2d) and ``shared_conv`` (SubMConv2d);
* ``dense_head``: ``heads_list`` of SeparateHeads, each with one branch per output (``center``,
  ``center_z``, ``dim``, ``rot``, ``hm``): a 1x1 SubMConv2d + BN1d + ReLU, then a 1x1 SubMConv2d.

Scenes: a sensor at the origin casts rays (32 beams, 0.4 deg azimuth steps) onto a ground plane,
labelled boxes of three classes and unlabelled clutter; the nearest hit per ray, with range noise
and dropped returns, gives points on visible faces only and a density that falls off with range.
Points are voxelized with spconv's CPU ``PointToVoxel`` (0.2 m voxels over +-20 m) and averaged per
voxel (as MeanVFE). Everything is deterministic given the seed.

Also: a BEV detection metric (heatmap peaks -> centers, matched to GT centers by BEV distance,
AP per class averaged over distance thresholds, mean over classes) and a short CPU training
routine (focal heatmap loss + L1 box regression at the site nearest each GT center).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import spconv.pytorch as spconv
import torch
from spconv.pytorch.utils import PointToVoxel
from torch import Tensor, nn

CLASS_NAMES = ("car", "truck", "pedestrian")
CLASS_NAMES_EACH_HEAD = (("car", "truck"), ("pedestrian",))
CLASS_SIZES = {"car": (4.2, 1.8, 1.5), "truck": (7.5, 2.5, 3.0), "pedestrian": (0.7, 0.7, 1.75)}  # dx, dy, dz
CLASS_PROBS = (0.5, 0.2, 0.3)
CLASS_INTENSITY = {"car": 0.6, "truck": 0.45, "pedestrian": 0.3}
HEAD_DICT = {"center": 2, "center_z": 1, "dim": 3, "rot": 2}  # + "hm" (one channel per class of the head)

POINT_CLOUD_RANGE = (-20.0, -20.0, -2.0, 20.0, 20.0, 2.0)
VOXEL_SIZE = (0.2, 0.2, 0.2)
GRID_SIZE = (200, 200, 20)  # x, y, z
FEATURE_STRIDE = 8  # the sparse BEV map's stride in voxels
SENSOR_HEIGHT = 1.8  # the ground plane is at z = -SENSOR_HEIGHT
MIN_POINTS_PER_BOX = 5  # boxes with fewer points are not ground truth (as nuScenes' evaluation)
CHANNELS = (16, 32, 64, 128, 128)
OUT_CHANNEL = 128
NARROW = {"channels": (8, 16, 16, 32, 32), "out_channel": 32}  # a faster copy for tests


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------
def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


def conv_block(cin: int, cout: int, kernel: int, indice_key: str, stride: int = 1, padding: int = 0,
               conv_type: str = "subm") -> spconv.SparseSequential:
    """Sparse conv (no bias) + BN1d + ReLU (OpenPCDet's ``post_act_block``)."""
    if conv_type == "subm":
        conv = spconv.SubMConv3d(cin, cout, kernel, bias=False, indice_key=indice_key)
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False,
                                   indice_key=indice_key)
    else:
        raise ValueError(f"unknown conv_type {conv_type!r}")
    return spconv.SparseSequential(conv, _bn(cout), nn.ReLU())


class SparseBasicBlock(spconv.SparseModule):
    """Two 3x3x3 SubMConv3d with BN1d, ReLU after the first and after the residual add."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, indice_key: str | None = None) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(inplanes, planes, 3, stride=1, padding=1, bias=True, indice_key=indice_key)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = spconv.SubMConv3d(planes, planes, 3, stride=1, padding=1, bias=True, indice_key=indice_key)
        self.bn2 = _bn(planes)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features))
        return out.replace_feature(self.relu(out.features + x.features))


class VoxelResBackBone8xVoxelNeXt(nn.Module):
    """VoxelNeXt's sparse backbone: six stages, sparse BEV output at stride 8."""

    def __init__(self, input_channels: int = 4, grid_size: Sequence[int] = GRID_SIZE,
                 channels: Sequence[int] = CHANNELS, out_channel: int = OUT_CHANNEL, blocks: int = 2) -> None:
        super().__init__()
        if channels[3] != channels[4]:
            raise ValueError("conv4, conv5 and conv6 features are concatenated: channels[3] must equal channels[4]")
        c = list(channels)
        self.sparse_shape = [int(grid_size[2]) + 1, int(grid_size[1]), int(grid_size[0])]  # z, y, x
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, c[0], 3, padding=1, bias=False, indice_key="subm1"), _bn(c[0]), nn.ReLU())
        self.conv1 = spconv.SparseSequential(*[SparseBasicBlock(c[0], c[0], indice_key="res1") for _ in range(blocks)])
        stages = [(c[0], c[1]), (c[1], c[2]), (c[2], c[3]), (c[3], c[4]), (c[4], c[4])]
        for i, (cin, cout) in enumerate(stages, start=2):
            down = conv_block(cin, cout, 3, f"spconv{i}", stride=2, padding=1, conv_type="spconv")
            res = [SparseBasicBlock(cout, cout, indice_key=f"res{i}") for _ in range(blocks)]
            self.add_module(f"conv{i}", spconv.SparseSequential(down, *res))
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv2d(c[3], out_channel, 3, stride=1, padding=1, bias=False, indice_key="spconv_down2"),
            _bn(out_channel), nn.ReLU())
        self.shared_conv = spconv.SparseSequential(
            spconv.SubMConv2d(out_channel, out_channel, 3, stride=1, padding=1, bias=True),
            nn.BatchNorm1d(out_channel), nn.ReLU(True))
        self.num_point_features = out_channel

    @staticmethod
    def bev_out(x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        """Sums the features of every (batch, y, x) column over z: a 2D sparse tensor."""
        indices, inverse = torch.unique(x.indices[:, [0, 2, 3]], dim=0, return_inverse=True)
        features = x.features.new_zeros((len(indices), x.features.shape[1])).index_add_(0, inverse, x.features)
        return spconv.SparseConvTensor(features, indices.int(), list(x.spatial_shape[1:]), x.batch_size)

    def forward(self, batch: dict[str, Any]) -> spconv.SparseConvTensor:
        x = spconv.SparseConvTensor(batch["voxel_features"], batch["voxel_coords"].int(), self.sparse_shape,
                                    batch["batch_size"])
        x = self.conv1(self.conv_input(x))
        x_conv4 = self.conv4(self.conv3(self.conv2(x)))
        x_conv5 = self.conv5(x_conv4)
        x_conv6 = self.conv6(x_conv5)
        # As VoxelNeXt: conv5 / conv6 sites join the conv4 grid, rescaled in place.
        x_conv5.indices[:, 1:] *= 2
        x_conv6.indices[:, 1:] *= 4
        merged = x_conv4.replace_feature(torch.cat([x_conv4.features, x_conv5.features, x_conv6.features]))
        merged.indices = torch.cat([x_conv4.indices, x_conv5.indices, x_conv6.indices])
        return self.shared_conv(self.conv_out(self.bev_out(merged)))


class SeparateHead(nn.Module):
    """One branch per output: (num_conv - 1) x [SubMConv2d + BN1d + ReLU], then a 1x1 SubMConv2d."""

    def __init__(self, input_channels: int, sep_head_dict: dict[str, dict[str, int]], kernel_size: int = 1,
                 init_bias: float = -2.19) -> None:
        super().__init__()
        self.sep_head_dict = sep_head_dict
        for name, spec in sep_head_dict.items():
            layers: list[nn.Module] = [
                spconv.SparseSequential(
                    spconv.SubMConv2d(input_channels, input_channels, kernel_size, padding=kernel_size // 2,
                                      bias=False, indice_key=name),
                    nn.BatchNorm1d(input_channels), nn.ReLU())
                for _ in range(spec["num_conv"] - 1)
            ]
            layers.append(spconv.SubMConv2d(input_channels, spec["out_channels"], 1, bias=True, indice_key=name + "out"))
            branch = nn.Sequential(*layers)
            with torch.no_grad():
                if name == "hm":
                    branch[-1].bias.fill_(init_bias)
                else:
                    branch[-1].weight.mul_(0.1)
                    branch[-1].bias.zero_()
            self.add_module(name, branch)

    def forward(self, x: spconv.SparseConvTensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(x).features for name in self.sep_head_dict}


class VoxelNeXtHead(nn.Module):
    """One SeparateHead per class group (``heads_list``), all on the shared sparse BEV features."""

    def __init__(self, input_channels: int = OUT_CHANNEL,
                 class_names_each_head: Sequence[Sequence[str]] = CLASS_NAMES_EACH_HEAD,
                 num_hm_conv: int = 2, kernel_size: int = 1) -> None:
        super().__init__()
        self.class_names_each_head = [list(names) for names in class_names_each_head]
        self.heads_list = nn.ModuleList()
        for names in self.class_names_each_head:
            spec = {k: {"out_channels": c, "num_conv": 2} for k, c in HEAD_DICT.items()}
            spec["hm"] = {"out_channels": len(names), "num_conv": num_hm_conv}
            self.heads_list.append(SeparateHead(input_channels, spec, kernel_size))

    def forward(self, x: spconv.SparseConvTensor) -> list[dict[str, Tensor]]:
        return [head(x) for head in self.heads_list]


class VoxelNeXtToy(nn.Module):
    """MeanVFE (done in the data) -> ``backbone_3d`` -> ``dense_head``, as OpenPCDet names them."""

    def __init__(self, channels: Sequence[int] = CHANNELS, out_channel: int = OUT_CHANNEL, blocks: int = 2,
                 input_channels: int = 4) -> None:
        super().__init__()
        self.class_names = list(CLASS_NAMES)
        self.backbone_3d = VoxelResBackBone8xVoxelNeXt(input_channels, GRID_SIZE, channels, out_channel, blocks)
        self.dense_head = VoxelNeXtHead(out_channel)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = self.backbone_3d(batch)
        return {"pred_dicts": self.dense_head(x), "voxel_indices": x.indices, "batch_size": x.batch_size}


def head_outputs(model: nn.Module, batch: dict[str, Any]) -> list[Tensor]:
    """Every head branch's output features, in a fixed order: the RD distortion target."""
    return [t for pred in model(batch)["pred_dicts"] for t in pred.values()]


def run_model(model: nn.Module, batch: dict[str, Any]) -> Any:
    """``run(model, batch)`` for calibration and reconstruction."""
    return model(batch)


def build_toy(seed: int = 0, narrow: bool = False, blocks: int = 2) -> VoxelNeXtToy:
    """A freshly initialized toy detector (eval mode)."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(NARROW) if narrow else {}
    return VoxelNeXtToy(blocks=blocks, **kwargs).eval()


@torch.no_grad()
def set_bn_statistics(model: nn.Module, batches: Sequence[dict[str, Any]]) -> nn.Module:
    """Running BN statistics as the cumulative average over ``batches`` (so BN folding is not the
    identity on a freshly initialized model); returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for batch in batches:
        model(batch)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Synthetic scenes
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Targets, training
# ---------------------------------------------------------------------------------------------
def site_centers(voxel_indices: Tensor) -> Tensor:
    """BEV (x, y) in meters of sparse BEV sites ``(b, y, x)`` (VoxelNeXt: index * stride * voxel + min)."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    idx = voxel_indices.long()
    return torch.stack([idx[:, 2] * cell + POINT_CLOUD_RANGE[0], idx[:, 1] * cell + POINT_CLOUD_RANGE[1]], dim=1).float()


def _head_class_ids() -> list[list[int]]:
    return [[CLASS_NAMES.index(n) for n in names] for names in CLASS_NAMES_EACH_HEAD]


def assign_targets(voxel_indices: Tensor, gt_boxes: Tensor) -> list[dict[str, Tensor]]:
    """Per head: Gaussian heatmaps over the sparse sites and, at the site nearest each GT center,
    regression targets (center offset in cells, z, log dims, sin / cos yaw)."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    centers = site_centers(voxel_indices)
    batch_idx = voxel_indices[:, 0].long()
    out = []
    for ids in _head_class_ids():
        hm = centers.new_zeros(len(centers), len(ids))
        inds, boxes = [], []
        for b in range(gt_boxes.shape[0]):
            sites = torch.nonzero(batch_idx == b).squeeze(1)
            if len(sites) == 0:
                continue
            for box in gt_boxes[b]:
                label = int(box[7]) - 1
                if label < 0 or label not in ids:
                    continue
                d2 = (centers[sites] - box[:2]).pow(2).sum(1)
                sigma = max(0.5 * cell, float(box[3:5].min()) / 3)
                k = ids.index(label)
                hm[sites, k] = torch.maximum(hm[sites, k], torch.exp(-d2 / (2 * sigma**2)))
                nearest = sites[d2.argmin()]
                hm[nearest, k] = 1.0
                inds.append(int(nearest))
                boxes.append(box)
        ind = torch.tensor(inds, dtype=torch.long)
        box_t = torch.stack(boxes) if boxes else centers.new_zeros(0, 8)
        reg = {
            "center": (box_t[:, :2] - centers[ind]) / cell,
            "center_z": box_t[:, 2:3],
            "dim": box_t[:, 3:6].clamp(min=1e-3).log(),
            "rot": torch.stack([box_t[:, 6].sin(), box_t[:, 6].cos()], dim=1),
        }
        out.append({"hm": hm, "inds": ind, **reg})
    return out


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalized by the number of positives."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -(p.log() * (1 - p).pow(2) * pos).sum()
    neg_loss = -((1 - p).log() * p.pow(2) * (1 - target).pow(4) * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def detection_loss(out: dict[str, Any], gt_boxes: Tensor) -> Tensor:
    targets = assign_targets(out["voxel_indices"], gt_boxes)
    loss = out["voxel_indices"].new_zeros((), dtype=torch.float32)
    for pred, tgt in zip(out["pred_dicts"], targets):
        loss = loss + focal_loss(pred["hm"], tgt["hm"])
        if len(tgt["inds"]):
            for key in HEAD_DICT:
                loss = loss + 0.25 * (pred[key][tgt["inds"]] - tgt[key]).abs().mean()
    return loss


def train_toy(model: nn.Module, scenes: Sequence[Scene], steps: int, batch_size: int = 2, lr: float = 3e-3,
              seed: int = 0, log_every: int = 0) -> list[float]:
    """Adam with a cosine schedule on random batches of ``scenes``; returns the losses; eval mode after.

    Call ``pcdet_ext.apply_cpu_patches()`` first on a machine without CUDA.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.3)
    model.train()
    losses = []
    for step in range(steps):
        pick = torch.randperm(len(scenes), generator=gen)[:batch_size].tolist()
        batch = collate([scenes[i] for i in pick])
        loss = detection_loss(model(batch), batch["gt_boxes"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}: loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
    model.eval()
    return losses


# ---------------------------------------------------------------------------------------------
# Decoding and the BEV metric
# ---------------------------------------------------------------------------------------------
NMS_RADIUS = {"car": 2.0, "truck": 3.0, "pedestrian": 0.7}


@torch.no_grad()
def decode(out: dict[str, Any], score_thresh: float = 0.05, max_per_class: int = 50) -> list[list[dict[str, Any]]]:
    """Detections per batch item: ``{"label", "score", "center"}`` (label 1-based, BEV center in m),
    from heatmap peaks with center-distance NMS."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    centers = site_centers(out["voxel_indices"])
    batch_idx = out["voxel_indices"][:, 0].long()
    dets: list[list[dict[str, Any]]] = [[] for _ in range(out["batch_size"])]
    for pred, ids in zip(out["pred_dicts"], _head_class_ids()):
        scores = pred["hm"].float().sigmoid()
        xy = centers + pred["center"].float() * cell
        for k, cls in enumerate(ids):
            for b in range(out["batch_size"]):
                sel = torch.nonzero((batch_idx == b) & (scores[:, k] > score_thresh)).squeeze(1)
                order = sel[scores[sel, k].argsort(descending=True)]
                kept: list[int] = []
                for i in order.tolist():
                    if all(float((xy[i] - xy[j]).norm()) > NMS_RADIUS[CLASS_NAMES[cls]] for j in kept):
                        kept.append(i)
                        if len(kept) >= max_per_class:
                            break
                dets[b].extend({"label": cls + 1, "score": float(scores[i, k]), "center": xy[i].tolist()} for i in kept)
    return dets


def average_precision(scores: Sequence[float], matched: Sequence[bool], num_gt: int) -> float:
    """Area under the precision envelope (all-point interpolation)."""
    if num_gt == 0:
        return math.nan
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(matched, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))


def bev_map(detections: Sequence[Sequence[dict[str, Any]]], gt_boxes: Sequence[Tensor],
            thresholds: Sequence[float] = (0.5, 1.0, 2.0)) -> dict[str, Any]:
    """Center-distance AP per class (nuScenes-style matching: by score, to the nearest unmatched GT
    of the class within the threshold), averaged over ``thresholds``; ``mAP`` is the class mean."""
    ap: dict[str, float] = {}
    for c, name in enumerate(CLASS_NAMES, start=1):
        per_thresh = []
        for thr in thresholds:
            scores, matched, num_gt = [], [], 0
            for dets, gt in zip(detections, gt_boxes):
                g = gt[gt[:, 7] == c, :2]
                num_gt += len(g)
                used = torch.zeros(len(g), dtype=torch.bool)
                for d in sorted((d for d in dets if d["label"] == c), key=lambda d: -d["score"]):
                    hit = False
                    if len(g):
                        dist = (g - torch.tensor(d["center"])).norm(dim=1)
                        dist[used] = math.inf
                        j = int(dist.argmin())
                        if float(dist[j]) <= thr:
                            used[j] = True
                            hit = True
                    scores.append(d["score"])
                    matched.append(hit)
            per_thresh.append(average_precision(scores, matched, num_gt))
        ap[name] = float(np.nanmean(per_thresh)) if not all(math.isnan(a) for a in per_thresh) else math.nan
    values = [v for v in ap.values() if not math.isnan(v)]
    return {"mAP": float(np.mean(values)) if values else math.nan, "AP": ap}


@torch.no_grad()
def evaluate(model: nn.Module, scenes: Sequence[Scene], batch_size: int = 2) -> dict[str, Any]:
    """The BEV metric of ``model`` on ``scenes``."""
    model.eval()
    dets: list[list[dict[str, Any]]] = []
    for batch in batches_of(scenes, batch_size):
        dets.extend(decode(model(batch)))
    return bev_map(dets, [s.gt_boxes for s in scenes])
