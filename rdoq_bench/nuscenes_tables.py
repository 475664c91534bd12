"""The nuScenes devkit tables of a generated set (:mod:`rdoq_bench.nuscenes_format`), so the
official detection evaluation (``nuscenes.eval.detection``, mAP / NDS), which OpenPCDet's
``NuScenesDataset.evaluation`` runs, works on it.

Everything is derived from the infos the generator pickles: one log, scene and map record per
split, one ``sample`` and one key-frame ``LIDAR_TOP`` ``sample_data`` (with its ego pose and the
sensor calibration) per info, one ``instance`` and ``sample_annotation`` per ground-truth box, in
global coordinates. Sweeps get no ``sample_data`` record: neither the evaluation nor OpenPCDet's
conversion of detections reads them.

The devkit picks the samples of an evaluation split by scene *name*
(``nuscenes.utils.splits.create_splits_scenes``), so each split's scene carries a name of that
split (:data:`SCENE_NAMES`). Each keyframe places its objects anew, so an annotation has no
``prev`` / ``next`` and the devkit cannot estimate a ground-truth velocity (NaN): its velocity
error (mAVE) is 1 by the devkit's rule, which costs NDS 0.1 whatever the detector does.
The map record points at a 1x1 PNG (the devkit asserts the file exists and never reads it here).
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# A scene name of each split, per version (nuscenes.utils.splits): the devkit filters by it.
SCENE_NAMES: dict[str, dict[str, str]] = {
    "v1.0-trainval": {"train": "scene-0001", "val": "scene-0003"},
    "v1.0-mini": {"train": "scene-0061", "val": "scene-0103"},
}
# nuScenes category of each detection class (nuscenes.eval.detection.utils.category_to_detection_name).
CATEGORIES = {
    "car": "vehicle.car", "truck": "vehicle.truck", "construction_vehicle": "vehicle.construction",
    "bus": "vehicle.bus.rigid", "trailer": "vehicle.trailer", "barrier": "movable_object.barrier",
    "motorcycle": "vehicle.motorcycle", "bicycle": "vehicle.bicycle", "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone",
}
ATTRIBUTES = ("vehicle.moving", "vehicle.parked", "vehicle.stopped", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down")
VEHICLES = {"car", "truck", "construction_vehicle", "bus", "trailer"}
MOVING = 0.2  # m/s: OpenPCDet's threshold for a moving attribute
MAP_FILE = "maps/synthetic_semantic_prior.png"


def tok(*parts: Any) -> str:
    """A deterministic 32-hex-digit token from ``parts``."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def attribute(name: str, speed: float) -> str | None:
    """The attribute a box of class ``name`` moving at ``speed`` gets (None: barriers, cones)."""
    moving = speed > MOVING
    if name in VEHICLES:
        return "vehicle.moving" if moving else "vehicle.parked"
    if name in ("motorcycle", "bicycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    if name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    return None


def yaw_quaternion(yaw: float) -> list[float]:
    """``[w, x, y, z]`` of a rotation by ``yaw`` about z."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def rotation_quaternion(matrix: np.ndarray) -> list[float]:
    """``[w, x, y, z]`` of a 4x4 pose whose rotation is about z only (the generator's poses)."""
    return yaw_quaternion(float(np.arctan2(matrix[1, 0], matrix[0, 0])))


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def _annotations(info: dict[str, Any], global_from_lidar: np.ndarray, sample: str, attrs: dict[str, str],
                 tables: dict[str, list[dict[str, Any]]]) -> None:
    """Appends the instances and sample annotations of one keyframe's boxes (global frame)."""
    yaw0 = float(np.arctan2(global_from_lidar[1, 0], global_from_lidar[0, 0]))
    for k, (name, box) in enumerate(zip(info["gt_names"], info["gt_boxes"], strict=True)):
        name = str(name)
        ann, inst = tok(sample, "ann", k), tok(sample, "instance", k)
        centre = global_from_lidar[:3, :3] @ box[:3] + global_from_lidar[:3, 3]
        attr = attribute(name, float(np.hypot(box[7], box[8])))
        tables["instance"].append({"token": inst, "category_token": tok("category", CATEGORIES[name]),
                                   "nbr_annotations": 1, "first_annotation_token": ann,
                                   "last_annotation_token": ann})
        tables["sample_annotation"].append({
            "token": ann, "sample_token": sample, "instance_token": inst, "visibility_token": "4",
            "attribute_tokens": [attrs[attr]] if attr else [], "translation": centre.tolist(),
            "size": [float(box[4]), float(box[3]), float(box[5])],  # w, l, h
            "rotation": yaw_quaternion(yaw0 + float(box[6])), "prev": "", "next": "",
            "num_lidar_pts": int(info["num_lidar_pts"][k]), "num_radar_pts": int(info["num_radar_pts"][k]),
        })


def devkit_tables(infos: dict[str, list[dict[str, Any]]], version: str) -> dict[str, list[dict[str, Any]]]:
    """The 13 tables ``nuscenes.NuScenes`` loads, for the infos by split of a generated set."""
    if version not in SCENE_NAMES:
        raise ValueError(f"devkit tables for {sorted(SCENE_NAMES)}; got version {version!r}")
    attrs = {name: tok("attribute", name) for name in ATTRIBUTES}
    sensor, calib = tok("sensor", "LIDAR_TOP"), tok("calibrated_sensor", "LIDAR_TOP")
    tables: dict[str, list[dict[str, Any]]] = {
        "category": [{"token": tok("category", c), "name": c, "description": ""} for c in CATEGORIES.values()],
        "attribute": [{"token": t, "name": n, "description": ""} for n, t in attrs.items()],
        "visibility": [{"token": "4", "level": "v80-100", "description": "visibility of whole object is 80-100%"}],
        "sensor": [{"token": sensor, "channel": "LIDAR_TOP", "modality": "lidar"}],
        "calibrated_sensor": [], "ego_pose": [], "log": [], "scene": [], "sample": [], "sample_data": [],
        "instance": [], "sample_annotation": [], "map": [],
    }
    car_from_lidar = None
    for split, split_infos in infos.items():
        if not split_infos:
            continue
        log, scene = tok(split, "log"), tok(split, "scene")
        tables["log"].append({"token": log, "logfile": f"synthetic-{split}", "vehicle": "n000",
                              "date_captured": "2026-01-01", "location": "synthetic"})
        samples = [str(info["token"]) for info in split_infos]
        tables["scene"].append({"token": scene, "log_token": log, "nbr_samples": len(samples),
                                "first_sample_token": samples[0], "last_sample_token": samples[-1],
                                "name": SCENE_NAMES[version][split], "description": f"generated {split}"})
        for i, info in enumerate(split_infos):
            sample, stamp = samples[i], round(float(info["timestamp"]) * 1e6)
            car_from_lidar = np.linalg.inv(info["ref_from_car"])
            global_from_car = np.linalg.inv(info["car_from_global"])
            pose = tok(sample, "ego_pose")
            tables["ego_pose"].append({"token": pose, "timestamp": stamp, "translation": global_from_car[:3, 3].tolist(),
                                       "rotation": rotation_quaternion(global_from_car)})
            tables["sample"].append({"token": sample, "timestamp": stamp, "scene_token": scene,
                                     "prev": samples[i - 1] if i else "",
                                     "next": samples[i + 1] if i + 1 < len(samples) else ""})
            tables["sample_data"].append({
                "token": tok(sample, "LIDAR_TOP"), "sample_token": sample, "ego_pose_token": pose,
                "calibrated_sensor_token": calib, "timestamp": stamp, "fileformat": "pcd", "is_key_frame": True,
                "height": 0, "width": 0, "filename": str(info["lidar_path"]),
                "prev": tok(samples[i - 1], "LIDAR_TOP") if i else "",
                "next": tok(samples[i + 1], "LIDAR_TOP") if i + 1 < len(samples) else "",
            })
            _annotations(info, global_from_car @ car_from_lidar, sample, attrs, tables)
    if car_from_lidar is not None:
        tables["calibrated_sensor"].append({"token": calib, "sensor_token": sensor,
                                            "translation": car_from_lidar[:3, 3].tolist(),
                                            "rotation": rotation_quaternion(car_from_lidar), "camera_intrinsic": []})
    tables["map"].append({"token": tok("map"), "log_tokens": [r["token"] for r in tables["log"]],
                          "category": "semantic_prior", "filename": MAP_FILE})
    return tables


def write_devkit_tables(root: Path | str, infos: dict[str, list[dict[str, Any]]], version: str) -> Path:
    """Writes the tables as ``root/<version>/<table>.json`` (and the map's PNG under ``root``);
    ``root`` is the devkit's ``dataroot``. Returns the tables' folder."""
    root = Path(root)
    out = root / version
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in devkit_tables(infos, version).items():
        (out / f"{name}.json").write_text(json.dumps(rows))
    (root / MAP_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / MAP_FILE).write_bytes(_png_1x1())
    return out


__all__ = ["CATEGORIES", "SCENE_NAMES", "attribute", "devkit_tables", "write_devkit_tables"]
