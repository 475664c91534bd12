"""A small nuScenes-format LiDAR set, generated (no download), in the layout OpenPCDet's
``NuScenesDataset`` reads (``pcdet/datasets/nuscenes/nuscenes_dataset.py``).

Under ``ROOT/<version>/`` (OpenPCDet's ``DATA_PATH / VERSION``):

* ``samples/LIDAR_TOP/<frame>.pcd.bin``: keyframes, float32 ``(N, 5)`` = x, y, z, intensity, ring
  index, in the sensor frame (as nuScenes' ``LidarPointCloud`` files);
* ``sweeps/LIDAR_TOP/<frame>__<k>.pcd.bin``: the 9 earlier sweeps of each keyframe (20 Hz), each in
  its own sensor frame while the ego car drives;
* ``nuscenes_infos_10sweeps_{train,val}.pkl``: lists of per-keyframe dicts with the keys of
  OpenPCDet's ``nuscenes_utils.fill_trainval_infos``: ``lidar_path``, ``token``, ``timestamp``,
  ``ref_from_car``, ``car_from_global``, ``cam_front_path`` / ``cam_intrinsic`` (no image is
  written), ``sweeps`` (``lidar_path``, ``sample_data_token``, ``transform_matrix`` = sweep sensor
  -> keyframe sensor, ``global_from_car``, ``car_from_current``, ``time_lag`` in seconds),
  ``gt_boxes`` ``(K, 9)`` = x, y, z (box centre), dx, dy, dz, heading, vx, vy in the keyframe
  sensor frame, ``gt_boxes_velocity`` ``(K, 3)``, ``gt_names``, ``gt_boxes_token``,
  ``num_lidar_pts`` and ``num_radar_pts``;
* ``<version>/*.json`` and ``maps/``: the nuScenes devkit tables of these infos
  (:mod:`rdoq_bench.nuscenes_tables`), so OpenPCDet's evaluation runs the official nuScenes
  detection metric (mAP / NDS) on the ``val`` split.

A scene is a flat ground plane (``z = -SENSOR_HEIGHT`` in the sensor frame) with points denser
near the car, and objects of the 10 detection classes at their typical nuScenes sizes, each a
cluster of points on its four sides and top (about ``POINTS_AT_10M`` points at 10 m, falling with
the square of the range). Vehicles, cyclists and pedestrians move; barriers and cones do not. The
ego car drives along x at ``EGO_SPEED``; a sweep ``k`` steps back shows the objects at
``centre - velocity * k / 20`` seen from where the car was then. Everything is a function of
the seed.

``python -m rdoq_bench.nuscenes_format OUT [--train N --val N --points N --seed S]``.
"""
from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rdoq_bench.nuscenes_tables import SCENE_NAMES, write_devkit_tables

# The 10 classes of nuScenes detection, OpenPCDet's order, with typical (dx, dy, dz) in metres.
CLASS_SIZES: dict[str, tuple[float, float, float]] = {
    "car": (4.6, 1.95, 1.73),
    "truck": (6.9, 2.5, 2.8),
    "construction_vehicle": (6.4, 2.8, 3.2),
    "bus": (11.0, 2.95, 3.5),
    "trailer": (12.0, 2.9, 3.9),
    "barrier": (0.5, 2.5, 0.98),
    "motorcycle": (2.1, 0.77, 1.47),
    "bicycle": (1.7, 0.6, 1.28),
    "pedestrian": (0.73, 0.67, 1.77),
    "traffic_cone": (0.41, 0.41, 1.07),
}
CLASS_NAMES = tuple(CLASS_SIZES)
MAX_SPEED = {"car": 8.0, "truck": 6.0, "construction_vehicle": 2.0, "bus": 6.0, "trailer": 4.0, "barrier": 0.0,
             "motorcycle": 8.0, "bicycle": 4.0, "pedestrian": 1.5, "traffic_cone": 0.0}  # m/s
INTENSITY = {name: 0.15 + 0.07 * i for i, name in enumerate(CLASS_NAMES)}  # a weak per-class cue
SENSOR_HEIGHT = 1.84  # LIDAR_TOP above the ground
CAR_FROM_LIDAR = (0.94, 0.0, SENSOR_HEIGHT)  # where LIDAR_TOP sits in the ego-car frame
EGO_SPEED = 5.0  # m/s along the car's x
SWEEP_HZ = 20.0
KEYFRAME_HZ = 2.0
POINTS_AT_10M = 400
MIN_RANGE, MAX_RANGE = 4.0, 48.0  # object centres (inside the stock +-54 m range)
# The nuScenes detection metric ignores boxes farther from the car than this (detection_cvpr_2019's
# class_range, in m); objects are placed inside it, so every class is evaluated.
EVAL_RANGE = {"car": 50.0, "truck": 50.0, "construction_vehicle": 50.0, "bus": 50.0, "trailer": 50.0,
              "barrier": 30.0, "motorcycle": 40.0, "bicycle": 40.0, "pedestrian": 40.0, "traffic_cone": 30.0}
RINGS = 32
VERSION = "v1.0-trainval"
INFO_NAME = "nuscenes_infos_{sweeps}sweeps_{split}.pkl"


@dataclass(frozen=True)
class NuScenesSpec:
    """What :func:`write_nuscenes` generates."""

    train_frames: int = 8
    val_frames: int = 4
    points: int = 32000  # ground points of a keyframe (objects add a few thousand)
    sweep_points: int | None = None  # ground points of a sweep; None: as ``points``
    objects_per_class: int = 2
    sweeps: int = 10  # the keyframe and sweeps - 1 earlier sweeps
    seed: int = 0
    version: str = VERSION

    def __post_init__(self) -> None:
        for name in ("train_frames", "val_frames", "points", "objects_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.sweeps < 1:
            raise ValueError(f"sweeps must be >= 1; got {self.sweeps}")


def pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """The 4x4 homogeneous transform of a rotation by ``yaw`` about z, then a translation."""
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = (x, y, z)
    return m


def _token(rng: np.random.Generator) -> str:
    """A nuScenes-style 32-hex-digit token."""
    return "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))


def _place_objects(rng: np.random.Generator, per_class: int) -> tuple[list[str], np.ndarray]:
    """Class names and boxes ``(K, 9)`` (velocity included) that do not overlap in BEV."""
    names, boxes, radii = [], [], []
    for name in CLASS_NAMES:
        dx, dy, dz = CLASS_SIZES[name]
        radius = 0.5 * np.hypot(dx, dy)
        for _ in range(per_class):
            for _attempt in range(100):
                far = min(MAX_RANGE, EVAL_RANGE[name] - 2.0)
                r, phi = rng.uniform(MIN_RANGE + radius, far), rng.uniform(-np.pi, np.pi)
                x, y = r * np.cos(phi), r * np.sin(phi)
                if all(np.hypot(x - b[0], y - b[1]) > radius + q + 0.5 for b, q in zip(boxes, radii, strict=True)):
                    break
            else:
                continue  # no free spot: the scene has one object fewer
            heading = rng.uniform(-np.pi, np.pi)
            speed = rng.uniform(0.0, MAX_SPEED[name])
            vx, vy = speed * np.cos(heading), speed * np.sin(heading)
            boxes.append([x, y, -SENSOR_HEIGHT + dz / 2, dx, dy, dz, heading, vx, vy])
            names.append(name)
            radii.append(radius)
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 9)


def _box_surface_points(rng: np.random.Generator, box: np.ndarray, count: int) -> np.ndarray:
    """``count`` points on the four sides and the top of ``box`` (x, y, z)."""
    dx, dy, dz = box[3:6]
    areas = np.array([dy * dz, dy * dz, dx * dz, dx * dz, dx * dy])  # +x, -x, +y, -y, top
    face = rng.choice(5, size=count, p=areas / areas.sum())
    u = rng.uniform(-0.5, 0.5, size=(count, 3)) * np.array([dx, dy, dz])
    inset = 0.49  # just inside the faces, so the points count as in the box
    u[face == 0, 0], u[face == 1, 0] = inset * dx, -inset * dx
    u[face == 2, 1], u[face == 3, 1] = inset * dy, -inset * dy
    u[face == 4, 2] = inset * dz
    c, s = np.cos(box[6]), np.sin(box[6])
    x = box[0] + u[:, 0] * c - u[:, 1] * s
    y = box[1] + u[:, 0] * s + u[:, 1] * c
    return np.stack([x, y, box[2] + u[:, 2]], axis=1)


def _points_per_box(boxes: np.ndarray) -> np.ndarray:
    dist = np.hypot(boxes[:, 0], boxes[:, 1])
    size = np.cbrt(boxes[:, 3] * boxes[:, 4] * boxes[:, 5]) / np.cbrt(4.6 * 1.95 * 1.73)  # a car is 1
    return np.clip(POINTS_AT_10M * size * (10.0 / dist) ** 2, 8, 2000).astype(np.int64)


def _ground(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` ground points, denser near the sensor (range uniform in [2, 54] m)."""
    r = rng.uniform(2.0, 54.0, count)
    phi = rng.uniform(-np.pi, np.pi, count)
    z = -SENSOR_HEIGHT + rng.normal(0.0, 0.02, count)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _cloud(rng: np.random.Generator, names: list[str], boxes: np.ndarray, ground: int,
           lag: float) -> tuple[np.ndarray, np.ndarray]:
    """A cloud ``(N, 5)`` in the keyframe sensor frame with the objects moved back by ``lag``
    seconds, and the number of points of each object."""
    counts = _points_per_box(boxes) if len(boxes) else np.zeros(0, dtype=np.int64)
    parts = [np.concatenate([_ground(rng, ground), np.full((ground, 1), 0.05)], axis=1)]
    for name, box, n in zip(names, boxes, counts, strict=True):
        moved = box.copy()
        moved[:2] -= box[7:9] * lag
        xyz = _box_surface_points(rng, moved, int(n))
        intensity = np.clip(INTENSITY[name] + rng.normal(0, 0.02, (len(xyz), 1)), 0, 1)
        parts.append(np.concatenate([xyz, intensity], axis=1))
    xyz_i = np.concatenate(parts, axis=0)
    elevation = np.arctan2(xyz_i[:, 2], np.hypot(xyz_i[:, 0], xyz_i[:, 1]))
    ring = np.clip(np.round((elevation + np.radians(30.7)) / np.radians(41.3) * (RINGS - 1)), 0, RINGS - 1)
    return np.concatenate([xyz_i, ring[:, None]], axis=1), counts


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    out = points.copy()
    out[:, :3] = points[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
    return out


def _write_bin(path: Path, points: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    points.astype(np.float32).tofile(path)


def _frame(root: Path, rng: np.random.Generator, spec: NuScenesSpec, index: int, scene_start: float) -> dict[str, Any]:
    """Writes keyframe ``index`` and its sweeps; returns its info."""
    names, boxes = _place_objects(rng, spec.objects_per_class)
    timestamp = scene_start + index / KEYFRAME_HZ  # seconds
    car_from_lidar = pose(*CAR_FROM_LIDAR, 0.0)
    ref_from_car = np.linalg.inv(car_from_lidar)
    ego_x = EGO_SPEED * index / KEYFRAME_HZ
    global_from_car = pose(ego_x, 0.0, 0.0, 0.0)
    car_from_global = np.linalg.inv(global_from_car)
    stem = f"n000-synthetic__LIDAR_TOP__{int(timestamp * 1e6)}"
    lidar_path = f"samples/LIDAR_TOP/{stem}.pcd.bin"
    cloud, counts = _cloud(rng, names, boxes, spec.points, lag=0.0)
    _write_bin(root / lidar_path, cloud)
    sweeps = []
    for k in range(1, spec.sweeps):
        lag = k / SWEEP_HZ
        sweep_global_from_car = pose(ego_x - EGO_SPEED * lag, 0.0, 0.0, 0.0)
        tm = ref_from_car @ car_from_global @ sweep_global_from_car @ car_from_lidar  # sweep sensor -> keyframe
        ground = spec.points if spec.sweep_points is None else spec.sweep_points
        sweep_cloud, _ = _cloud(rng, names, boxes, ground, lag=lag)
        path = f"sweeps/LIDAR_TOP/{stem}__{k}.pcd.bin"
        _write_bin(root / path, _transform(sweep_cloud, np.linalg.inv(tm)))
        sweeps.append({"lidar_path": path, "sample_data_token": _token(rng), "transform_matrix": tm,
                       "global_from_car": sweep_global_from_car, "car_from_current": car_from_lidar,
                       "time_lag": lag})
    velocity = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1)
    return {
        "lidar_path": lidar_path,
        "cam_front_path": f"samples/CAM_FRONT/{stem.replace('LIDAR_TOP', 'CAM_FRONT')}.jpg",  # not written
        "cam_intrinsic": np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]]),
        "token": _token(rng),
        "sweeps": sweeps,
        "ref_from_car": ref_from_car,
        "car_from_global": car_from_global,
        "timestamp": timestamp,
        "gt_boxes": boxes,
        "gt_boxes_velocity": velocity,
        "gt_names": np.array(names),
        "gt_boxes_token": np.array([_token(rng) for _ in names]),
        "num_lidar_pts": counts,
        "num_radar_pts": np.zeros(len(names), dtype=np.int64),
    }


def write_nuscenes(root: Path | str, spec: NuScenesSpec | None = None) -> dict[str, list[dict[str, Any]]]:
    """Writes the set under ``root/<spec.version>/`` (with the devkit tables for the versions of
    :data:`~rdoq_bench.nuscenes_tables.SCENE_NAMES`); returns the infos by split (``train``,
    ``val``), as pickled there."""
    spec = spec or NuScenesSpec()
    out = Path(root) / spec.version
    rng = np.random.default_rng(spec.seed)
    infos: dict[str, list[dict[str, Any]]] = {}
    for split, frames, start in (("train", spec.train_frames, 1.5e9), ("val", spec.val_frames, 1.6e9)):
        infos[split] = [_frame(out, rng, spec, i, start) for i in range(frames)]
        with open(out / INFO_NAME.format(sweeps=spec.sweeps, split=split), "wb") as f:
            pickle.dump(infos[split], f)
    if spec.version in SCENE_NAMES:
        write_devkit_tables(out, infos, spec.version)
    return infos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="OpenPCDet's DATA_PATH (the set goes in OUT/<version>)")
    parser.add_argument("--train", type=int, default=NuScenesSpec.train_frames, help="train keyframes")
    parser.add_argument("--val", type=int, default=NuScenesSpec.val_frames, help="val keyframes")
    parser.add_argument("--points", type=int, default=NuScenesSpec.points, help="ground points per cloud")
    parser.add_argument("--sweep_points", type=int, default=None, help="ground points per sweep (default: --points)")
    parser.add_argument("--objects_per_class", type=int, default=NuScenesSpec.objects_per_class)
    parser.add_argument("--seed", type=int, default=NuScenesSpec.seed)
    args = parser.parse_args(argv)
    spec = NuScenesSpec(train_frames=args.train, val_frames=args.val, points=args.points,
                        sweep_points=args.sweep_points, objects_per_class=args.objects_per_class, seed=args.seed)
    infos = write_nuscenes(args.out, spec)
    print(f"wrote {len(infos['train'])} train / {len(infos['val'])} val keyframes under {args.out / spec.version}")


if __name__ == "__main__":
    main()
