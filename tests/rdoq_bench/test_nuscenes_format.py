"""The generated nuScenes-format set (:mod:`rdoq_bench.nuscenes_format`): file layout and shapes,
the info keys OpenPCDet's NuScenesDataset reads, consistent sweeps, and determinism."""
from __future__ import annotations

import filecmp
import pickle
from pathlib import Path

import numpy as np
import pytest

from rdoq_bench import nuscenes_format as nf

SPEC = nf.NuScenesSpec(train_frames=2, val_frames=1, points=3000, sweep_points=1000, objects_per_class=1, seed=4)
# What NuScenesDataset.__getitem__ / get_lidar_with_sweeps / get_sweep read, and the rest of
# nuscenes_utils.fill_trainval_infos' keys.
READ_KEYS = {"lidar_path", "token", "sweeps", "gt_boxes", "gt_names", "num_lidar_pts"}
INFO_KEYS = READ_KEYS | {"cam_front_path", "cam_intrinsic", "ref_from_car", "car_from_global", "timestamp",
                         "gt_boxes_velocity", "gt_boxes_token", "num_radar_pts"}
SWEEP_KEYS = {"lidar_path", "sample_data_token", "transform_matrix", "global_from_car", "car_from_current",
              "time_lag"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("nuscenes")
    return root, nf.write_nuscenes(root, SPEC)


def read_bin(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.float32)
    assert raw.size % 5 == 0
    return raw.reshape(-1, 5)


def in_box(points: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether each point lies in the box (x, y, z, dx, dy, dz, heading, ...)."""
    c, s = np.cos(box[6]), np.sin(box[6])
    rel = points[:, :3] - box[:3]
    local = np.stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c, rel[:, 2]], axis=1)
    return (np.abs(local) <= box[3:6] / 2 + margin).all(axis=1)


def test_layout_and_infos_as_nuscenes_dataset_reads_them(written: tuple[Path, dict]) -> None:
    root, infos = written
    data = root / nf.VERSION
    for split, count in (("train", 2), ("val", 1)):
        with open(data / f"nuscenes_infos_10sweeps_{split}.pkl", "rb") as f:
            stored = pickle.load(f)
        assert len(stored) == count and len(infos[split]) == count
        for info in stored:
            assert set(info) == INFO_KEYS
            assert info["lidar_path"].startswith("samples/LIDAR_TOP/") and info["lidar_path"].endswith(".pcd.bin")
            points = read_bin(data / info["lidar_path"])
            assert points.shape[0] > SPEC.points  # ground plus the objects
            assert set(np.unique(points[:, 4])) <= set(range(nf.RINGS))
            boxes = info["gt_boxes"]
            assert boxes.shape == (len(info["gt_names"]), 9) and boxes.dtype == np.float64
            assert sorted(info["gt_names"]) == sorted(nf.CLASS_NAMES)  # one of each class
            assert info["num_lidar_pts"].shape == (len(boxes),) and (info["num_lidar_pts"] >= 8).all()
            assert len(info["sweeps"]) == 9
            lags = [s["time_lag"] for s in info["sweeps"]]
            assert lags == sorted(lags) and lags[0] == pytest.approx(0.05)
            for sweep in info["sweeps"]:
                assert set(sweep) == SWEEP_KEYS and sweep["transform_matrix"].shape == (4, 4)
                assert read_bin(data / sweep["lidar_path"]).shape[0] > SPEC.sweep_points
    tokens = [i["token"] for split in infos.values() for i in split]
    assert len(set(tokens)) == len(tokens) and all(len(t) == 32 for t in tokens)


def test_boxes_sit_on_the_ground_and_hold_their_points(written: tuple[Path, dict]) -> None:
    root, infos = written
    info = infos["train"][0]
    points = read_bin(root / nf.VERSION / info["lidar_path"])
    boxes = info["gt_boxes"]
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 5] / 2, -nf.SENSOR_HEIGHT)
    start = SPEC.points  # a cloud is its ground points, then each object's in turn
    for box, count in zip(boxes, info["num_lidar_pts"], strict=True):
        assert in_box(points[start:start + count], box).all()
        assert in_box(points, box).sum() >= count  # ground points near the bottom may add a few
        start += count
    assert start == len(points)


def test_sweeps_map_back_onto_the_keyframe(written: tuple[Path, dict]) -> None:
    root, infos = written
    info = infos["val"][0]
    static = [k for k, n in enumerate(info["gt_names"]) if n in ("barrier", "traffic_cone")]
    assert static
    for sweep in info["sweeps"]:
        pts = read_bin(root / nf.VERSION / sweep["lidar_path"]).astype(np.float64)
        tm = sweep["transform_matrix"]
        in_ref = pts[:, :3] @ tm[:3, :3].T + tm[:3, 3]
        ground = in_ref[:SPEC.sweep_points]  # a cloud starts with its ground points
        assert np.abs(ground[:, 2] + nf.SENSOR_HEIGHT).max() < 0.2  # the ground lands on the ground
        assert not np.allclose(pts[:, 0], in_ref[:, 0])  # the car has moved since the sweep
        for k in static:  # static objects land where the keyframe has them
            assert in_box(in_ref, info["gt_boxes"][k], margin=0.01).sum() >= 8


def test_same_seed_same_bytes_and_another_seed_differs(written: tuple[Path, dict], tmp_path: Path) -> None:
    root, infos = written
    again = nf.write_nuscenes(tmp_path / "again", SPEC)
    first = sorted(p.relative_to(root) for p in root.rglob("*.bin"))
    assert first == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.bin"))
    _, mismatch, errors = filecmp.cmpfiles(root, tmp_path / "again", [str(p) for p in first], shallow=False)
    assert not mismatch and not errors
    np.testing.assert_array_equal(again["val"][0]["gt_boxes"], infos["val"][0]["gt_boxes"])
    assert again["val"][0]["token"] == infos["val"][0]["token"]
    other = nf.write_nuscenes(tmp_path / "other", nf.NuScenesSpec(**{**SPEC.__dict__, "seed": 5}))
    assert not np.array_equal(other["val"][0]["gt_boxes"], infos["val"][0]["gt_boxes"])


def test_bad_spec_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="train_frames must be >= 0"):
        nf.NuScenesSpec(train_frames=-1)
