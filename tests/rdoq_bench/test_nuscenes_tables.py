"""The devkit tables of the generated nuScenes-format set (:mod:`rdoq_bench.nuscenes_tables`): their
links and global boxes, and (with ``nuscenes-devkit`` importable, as ``make test-openpcdet`` makes
it) the official detection evaluation on them: ground truth as predictions scores mAP 1, boxes
moved by 3 m score less."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rdoq_bench.nuscenes_format import NuScenesSpec, write_nuscenes
from rdoq_bench.nuscenes_tables import CATEGORIES, SCENE_NAMES, attribute, devkit_tables

VERSION = "v1.0-trainval"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("nusc")
    infos = write_nuscenes(root, NuScenesSpec(train_frames=1, val_frames=3, points=1500, sweep_points=300,
                                              sweeps=2, seed=4))
    return root / VERSION, infos


def _tables(root: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.stem: json.loads(p.read_text()) for p in (root / VERSION).glob("*.json")}


def test_tables_link_up_and_hold_the_boxes_in_global_coordinates(written: tuple[Path, dict]) -> None:
    root, infos = written
    tables = _tables(root)
    assert len(tables) == 13 and (root / tables["map"][0]["filename"]).is_file()
    assert {s["name"] for s in tables["scene"]} == set(SCENE_NAMES[VERSION].values())
    by_token = {name: {r["token"]: r for r in rows} for name, rows in tables.items()}
    val = infos["val"]
    assert [s["token"] for s in tables["sample"]][-3:] == [i["token"] for i in val]
    for info in val:
        sample = by_token["sample"][info["token"]]
        scene = by_token["scene"][sample["scene_token"]]
        assert scene["name"] == SCENE_NAMES[VERSION]["val"]
        data = next(d for d in tables["sample_data"] if d["sample_token"] == info["token"])
        assert data["filename"] == info["lidar_path"] and (root / data["filename"]).is_file()
        pose = by_token["ego_pose"][data["ego_pose_token"]]
        anns = [a for a in tables["sample_annotation"] if a["sample_token"] == info["token"]]
        assert len(anns) == len(info["gt_boxes"])
        for ann, box, name in zip(anns, info["gt_boxes"], info["gt_names"], strict=True):
            # lidar -> car is a shift by CAR_FROM_LIDAR, car -> global by the ego pose (no rotation here)
            calib = by_token["calibrated_sensor"][data["calibrated_sensor_token"]]
            expect = box[:3] + np.array(calib["translation"]) + np.array(pose["translation"])
            np.testing.assert_allclose(ann["translation"], expect, atol=1e-9)
            assert ann["size"] == pytest.approx([box[4], box[3], box[5]])
            w, _, _, z = ann["rotation"]
            assert np.arctan2(np.sin(box[6]), np.cos(box[6])) == pytest.approx(2 * np.arctan2(z, w), abs=1e-9)
            category = by_token["category"][by_token["instance"][ann["instance_token"]]["category_token"]]
            assert category["name"] == CATEGORIES[str(name)]
            assert ann["num_lidar_pts"] > 0


def test_attributes_follow_speed_and_class() -> None:
    assert attribute("car", 3.0) == "vehicle.moving" and attribute("bus", 0.0) == "vehicle.parked"
    assert attribute("bicycle", 0.0) == "cycle.without_rider" and attribute("pedestrian", 1.0) == "pedestrian.moving"
    assert attribute("barrier", 0.0) is None and attribute("traffic_cone", 5.0) is None


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="v1.0-test"):
        devkit_tables({"val": []}, "v1.0-test")


def _results(root: Path, shift: float) -> dict[str, Any]:
    tables = _tables(root)
    names = {v: k for k, v in CATEGORIES.items()}
    samples = {s["token"]: s for s in tables["sample"]}
    scenes = {s["token"]: s["name"] for s in tables["scene"]}
    instances = {i["token"]: i["category_token"] for i in tables["instance"]}
    categories = {c["token"]: c["name"] for c in tables["category"]}
    results: dict[str, list[dict[str, Any]]] = {
        t: [] for t, s in samples.items() if scenes[s["scene_token"]] == SCENE_NAMES[VERSION]["val"]}
    for ann in tables["sample_annotation"]:
        if ann["sample_token"] in results:
            name = names[categories[instances[ann["instance_token"]]]]
            results[ann["sample_token"]].append({
                "sample_token": ann["sample_token"], "translation": [ann["translation"][0] + shift,
                                                                     *ann["translation"][1:]],
                "size": ann["size"], "rotation": ann["rotation"], "velocity": [0.0, 0.0], "detection_name": name,
                "detection_score": 0.5, "attribute_name": attribute(name, 0.0) or ""})
    return {"results": results, "meta": {"use_camera": False, "use_lidar": True, "use_radar": False,
                                         "use_map": False, "use_external": False}}


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_official_detection_eval_runs_on_the_tables(written: tuple[Path, dict], tmp_path: Path, shift: float) -> None:
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed (make test-openpcdet installs it)")
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import NuScenesEval
    from nuscenes.nuscenes import NuScenes

    root, _ = written
    (tmp_path / "results.json").write_text(json.dumps(_results(root, shift)))
    nusc = NuScenes(version=VERSION, dataroot=str(root), verbose=False)
    evaluation = NuScenesEval(nusc, config=config_factory("detection_cvpr_2019"),
                              result_path=str(tmp_path / "results.json"), eval_set="val",
                              output_dir=str(tmp_path), verbose=False)
    summary = evaluation.main(plot_examples=0, render_curves=False)
    if shift == 0.0:
        assert summary["mean_ap"] == pytest.approx(1.0)  # every class has a box in range
        assert summary["tp_errors"]["trans_err"] == pytest.approx(0.0, abs=1e-9)
        assert summary["tp_errors"]["vel_err"] == 1.0  # single annotations: no ground-truth velocity
    else:  # 3 m off: only the 4 m threshold of the four (0.5, 1, 2, 4 m) matches (a box pushed out
        # of its class range is lost)
        assert 0.15 < summary["mean_ap"] <= 0.25 + 1e-9
        assert summary["tp_errors"]["trans_err"] == 1.0  # no match within the 2 m of the TP errors
