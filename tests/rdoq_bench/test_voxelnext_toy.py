"""The VoxelNeXt-shaped toy detector and its synthetic LiDAR scenes, metric and training."""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

import pcdet_ext
from rdoq_bench import voxelnext_toy as toy


@pytest.fixture(autouse=True)
def _cpu_one_thread() -> Iterator[None]:
    pcdet_ext.apply_cpu_patches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared; one thread is steadier
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes() -> list[toy.Scene]:
    return toy.make_scenes(3, seed=0)


def test_scenes_are_deterministic_and_differ_by_seed(scenes: list[toy.Scene]) -> None:
    again = toy.make_scenes(3, seed=0)
    for a, b in zip(scenes, again):
        for name in ("points", "gt_boxes", "voxel_features", "voxel_coords"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    other = toy.make_scene(12345)
    assert other.points.shape != scenes[0].points.shape or not torch.equal(other.points, scenes[0].points)


def test_scene_geometry(scenes: list[toy.Scene]) -> None:
    lo, hi = torch.tensor(toy.POINT_CLOUD_RANGE[:3]), torch.tensor(toy.POINT_CLOUD_RANGE[3:])
    for s in scenes:
        assert ((s.points[:, :3] >= lo) & (s.points[:, :3] < hi)).all()
        labels = s.gt_boxes[:, 7]
        assert len(s.gt_boxes) >= 3 and set(labels.tolist()) <= {1.0, 2.0, 3.0}
        # Unique voxels, coords inside the grid, (z, y, x) order.
        assert len(torch.unique(s.voxel_coords, dim=0)) == len(s.voxel_coords)
        grid = torch.tensor(toy.GRID_SIZE[::-1])
        assert ((s.voxel_coords >= 0) & (s.voxel_coords < grid)).all()
        # Objects are seen from the sensor: their points lie on the near faces.
        for box in s.gt_boxes:
            inside = _points_in_box(s.points, box)
            assert int(inside.sum()) >= toy.MIN_POINTS_PER_BOX
            assert float(s.points[inside, :2].norm(dim=1).mean()) < float(box[:2].norm())
    # Ground returns thin out with range (fixed angular resolution).
    pts = torch.cat([s.points for s in scenes])
    ground = pts[pts[:, 2] < -toy.SENSOR_HEIGHT + 0.1]
    r = ground[:, :2].norm(dim=1)
    near = float(((r > 4) & (r < 8)).sum()) / (math.pi * (8**2 - 4**2))
    far = float(((r > 12) & (r < 16)).sum()) / (math.pi * (16**2 - 12**2))
    assert near > 3 * far > 0


def _points_in_box(points: torch.Tensor, box: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    c, s = math.cos(float(box[6])), math.sin(float(box[6]))
    d = points[:, :3] - box[:3]
    local = torch.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]], dim=1)
    return (local.abs() <= box[3:6] / 2 + margin).all(dim=1)


def test_voxel_features_are_the_mean_of_their_points(scenes: list[toy.Scene]) -> None:
    s = scenes[0]
    lo, size = torch.tensor(toy.POINT_CLOUD_RANGE[:3]), torch.tensor(toy.VOXEL_SIZE)
    cell = torch.floor((s.points[:, :3] - lo) / size).long().flip(1)  # (z, y, x)
    key = (cell[:, 0] * 1000 + cell[:, 1]) * 1000 + cell[:, 2]
    vkey = (s.voxel_coords[:, 0] * 1000 + s.voxel_coords[:, 1]) * 1000 + s.voxel_coords[:, 2]
    checked = 0
    for i in torch.randperm(len(vkey), generator=torch.Generator().manual_seed(0))[:200].tolist():
        members = s.points[key == vkey[i]]
        if 0 < len(members) <= 5:  # at most max_num_points_per_voxel points are kept
            torch.testing.assert_close(s.voxel_features[i], members.mean(0), atol=1e-5, rtol=1e-5)
            checked += 1
    assert checked > 100


def _count(model: torch.nn.Module, cls: type) -> int:
    return sum(type(m) is cls for m in model.modules())


def test_default_toy_mirrors_voxelnext_structure(scenes: list[toy.Scene]) -> None:
    model = toy.build_toy()
    backbone = model.backbone_3d
    assert [n for n, _ in backbone.named_children()] == ["conv_input", *[f"conv{i}" for i in range(1, 7)],
                                                         "conv_out", "shared_conv"]
    assert [m.out_channels for m in (backbone.conv_input[0], backbone.conv2[0][0], backbone.conv3[0][0],
                                     backbone.conv4[0][0], backbone.conv5[0][0])] == [16, 32, 64, 128, 128]
    # As VoxelNeXt: 25 SubMConv3d, 5 strided SparseConv3d, one SparseConv2d (conv_out).
    assert _count(model, spconv.SubMConv3d) == 25 and _count(model, spconv.SparseConv3d) == 5
    assert _count(model, spconv.SparseConv2d) == 1
    assert all(m.stride == [2, 2, 2] for m in model.modules() if type(m) is spconv.SparseConv3d)
    heads = model.dense_head.heads_list
    assert [list(h.sep_head_dict) for h in heads] == [["center", "center_z", "dim", "rot", "hm"]] * 2
    assert _count(model, spconv.SubMConv2d) == 1 + 2 * 5 * 2
    assert _count(model, torch.nn.BatchNorm1d) == 1 + 4 + 5 * 5 + 1 + 1 + 2 * 5
    with torch.no_grad():
        out = model(toy.collate(scenes[:1]))
    n = len(out["voxel_indices"])
    assert n > 0 and out["voxel_indices"].shape[1] == 3
    assert [p["hm"].shape for p in out["pred_dicts"]] == [(n, 2), (n, 1)]
    assert {k: v.shape[1] for k, v in out["pred_dicts"][0].items() if k != "hm"} == toy.HEAD_DICT


def test_toy_forward_backward_and_a_few_training_steps(scenes: list[toy.Scene]) -> None:
    model = toy.build_toy(seed=0, narrow=True).train()
    batch = toy.collate(scenes[:2])
    loss = toy.detection_loss(model(batch), batch["gt_boxes"])
    loss.backward()
    assert torch.isfinite(loss)
    convs = [m for m in model.modules() if isinstance(m, spconv.conv.SparseConvolution)]
    assert convs and all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = toy.train_toy(model, scenes, steps=2, batch_size=2, seed=0)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses) and not model.training
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_average_precision_by_hand() -> None:
    # Recall 1/2 at precision 1, then recall 1 at precision 2/3: 0.5 * 1 + 0.5 * 2/3.
    assert toy.average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 1 / 3)
    assert toy.average_precision([], [], 3) == 0.0
    assert math.isnan(toy.average_precision([0.5], [False], 0))


def test_bev_map_on_perfect_shifted_and_missing_detections(scenes: list[toy.Scene]) -> None:
    gts = [s.gt_boxes for s in scenes]

    def dets(shift: float, keep: float = 1.0) -> list[list[dict]]:
        out = []
        for gt in gts:
            n = math.ceil(keep * len(gt))
            out.append([{"label": int(b[7]), "score": 1.0 - 0.01 * i, "center": (b[:2] + torch.tensor([shift, 0.0])).tolist()}
                        for i, b in enumerate(gt[:n])])
        return out

    assert toy.bev_map(dets(0.0), gts)["mAP"] == pytest.approx(1.0)
    assert toy.bev_map(dets(1.5), gts)["mAP"] == pytest.approx(1 / 3)  # matched at 2 m only
    assert toy.bev_map(dets(50.0), gts)["mAP"] == pytest.approx(0.0)
    assert toy.bev_map([[] for _ in gts], gts)["mAP"] == 0.0
    partial = toy.bev_map(dets(0.0, keep=0.5), gts)["mAP"]
    assert 0.2 < partial < 0.9


def test_targets_decode_back_to_the_ground_truth(scenes: list[toy.Scene]) -> None:
    """Head outputs equal to the training targets decode to a perfect BEV mAP."""
    model = toy.build_toy(narrow=True)
    batch = toy.collate(scenes)
    with torch.no_grad():
        out = model(batch)
    targets = toy.assign_targets(out["voxel_indices"], batch["gt_boxes"])
    fake = []
    for pred, tgt in zip(out["pred_dicts"], targets):
        p = {k: torch.zeros_like(v) for k, v in pred.items()}
        p["hm"] = torch.where(tgt["hm"] >= 1.0, 8.0, -8.0)
        for key in toy.HEAD_DICT:
            p[key][tgt["inds"]] = tgt[key]
        fake.append(p)
    dets = toy.decode({**out, "pred_dicts": fake})
    result = toy.bev_map(dets, [s.gt_boxes for s in scenes])
    assert result["mAP"] == pytest.approx(1.0)
    assert np.isfinite(list(result["AP"].values())).all()
