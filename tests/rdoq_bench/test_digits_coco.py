"""Tests for ``rdoq_bench.digits_coco`` (needs scikit-learn and Pillow, not mmdet)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("sklearn")

from rdoq_bench import digits_coco
from rdoq_bench.digits_coco import (
    CLASSES,
    DigitsCocoSpec,
    generate_digits_coco,
    render_image,
    source_indices,
)

SMALL = DigitsCocoSpec(image_size=128, num_train=8, num_val=4, min_digit_px=16, max_digit_px=48)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small dataset shared by the read-only tests."""
    return generate_digits_coco(tmp_path_factory.mktemp("shared") / "digits", SMALL)


def _coco(root: Path, split: str) -> dict[str, Any]:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _anns_by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        grouped[ann["image_id"]].append(ann)
    return grouped


def _xyxy(bbox: list[float]) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union)


def _tmp_siblings(root: Path) -> list[Path]:
    return sorted(root.parent.glob(f"{root.name}.tmp-*"))


def _snapshot(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


# --------------------------------------------------------------------------- layout and schema


def test_layout(dataset: Path) -> None:
    assert json.loads((dataset / "spec.json").read_text()) == SMALL.to_dict()
    assert not _tmp_siblings(dataset)
    for split in ("train", "val"):
        coco = _coco(dataset, split)
        on_disk = sorted(p.name for p in (dataset / split).iterdir())
        listed = sorted(image["file_name"] for image in coco["images"])
        assert on_disk == listed
        assert len(listed) == SMALL.num_images(split)
        assert listed[0] == "000001.png"
        for image in coco["images"]:
            assert (image["width"], image["height"]) == (SMALL.image_size, SMALL.image_size)
            with Image.open(dataset / split / image["file_name"]) as png:
                assert png.mode == "RGB"
                assert png.size == (SMALL.image_size, SMALL.image_size)


def test_coco_schema(dataset: Path) -> None:
    for split in ("train", "val"):
        coco = _coco(dataset, split)
        assert coco["categories"] == [{"id": i + 1, "name": str(i)} for i in range(10)]
        assert [c["name"] for c in coco["categories"]] == list(CLASSES)
        image_ids = [image["id"] for image in coco["images"]]
        assert len(set(image_ids)) == len(image_ids)
        ann_ids = [ann["id"] for ann in coco["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        for ann in coco["annotations"]:
            assert ann["image_id"] in image_ids
            assert 1 <= ann["category_id"] <= 10
            assert ann["iscrowd"] == 0 and ann["segmentation"] == []
            assert all(isinstance(v, float) for v in ann["bbox"])
            assert ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3])


def test_objects_per_image(dataset: Path) -> None:
    counts = []
    for split in ("train", "val"):
        counts += [len(anns) for anns in _anns_by_image(_coco(dataset, split)).values()]
    assert min(counts) >= SMALL.min_objects - 1
    assert max(counts) <= SMALL.max_objects
    skipped_below_min = sum(count < SMALL.min_objects for count in counts)
    assert skipped_below_min <= len(counts) // 4


def test_boxes_inside_image_and_apart(dataset: Path) -> None:
    size = SMALL.image_size
    for split in ("train", "val"):
        for anns in _anns_by_image(_coco(dataset, split)).values():
            boxes = [_xyxy(ann["bbox"]) for ann in anns]
            for box in boxes:
                assert box[0] >= 0 and box[1] >= 0 and box[2] <= size and box[3] <= size
                assert box[2] > box[0] and box[3] > box[1]
                assert max(box[2] - box[0], box[3] - box[1]) <= SMALL.max_digit_px * 1.15 + 1
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert _iou(a, b) < 0.3


def test_boxes_are_tight_on_the_pasted_digits(dataset: Path) -> None:
    """Each box edge touches changed pixels and the box interior holds a clearly visible digit."""
    for split in ("train", "val"):
        coco = _coco(dataset, split)
        anns_by_image = _anns_by_image(coco)
        for index, image in enumerate(coco["images"]):
            rendered = render_image(SMALL, split, index)
            png = np.asarray(Image.open(dataset / split / image["file_name"]).convert("RGB"))
            np.testing.assert_array_equal(png, rendered.image)
            anns = anns_by_image[image["id"]]
            assert [ann["bbox"] for ann in anns] == [list(box) for box in rendered.boxes]
            assert [ann["category_id"] - 1 for ann in anns] == list(rendered.labels)

            diff = np.abs(png.astype(np.int32) - rendered.background.astype(np.int32)).max(axis=-1)
            changed = diff > 0
            for ann in anns:
                x0, y0, x1, y1 = _xyxy(ann["bbox"]).astype(int)
                inside = changed[y0:y1, x0:x1]
                assert inside[0].any() and inside[-1].any(), "top/bottom row of box is background"
                assert inside[:, 0].any() and inside[:, -1].any(), "left/right column is background"
                assert diff[y0:y1, x0:x1].max() >= 30, "no clearly visible digit inside the box"


def test_train_and_val_use_disjoint_handwriting() -> None:
    train, val = source_indices("train"), source_indices("val")
    assert not set(train.tolist()) & set(val.tolist())
    assert len(train) + len(val) == 1797
    assert len(train) == int(1797 * 0.8)
    with pytest.raises(ValueError, match="split"):
        source_indices("test")


# --------------------------------------------------------------------------- determinism


def test_same_spec_gives_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = generate_digits_coco(tmp_path / "again", SMALL)
    first, second = _snapshot(dataset), _snapshot(again)
    assert sorted(first) == sorted(second)
    for name, content in first.items():
        assert content == second[name], name


def test_other_seed_gives_other_data(dataset: Path, tmp_path: Path) -> None:
    other = generate_digits_coco(tmp_path / "other", dataclasses.replace(SMALL, seed=1))
    assert _coco(other, "train")["annotations"] != _coco(dataset, "train")["annotations"]
    assert (other / "train" / "000001.png").read_bytes() != (
        dataset / "train" / "000001.png"
    ).read_bytes()


def test_splits_and_images_use_separate_random_streams() -> None:
    train_0 = render_image(SMALL, "train", 0)
    assert not np.array_equal(train_0.background, render_image(SMALL, "val", 0).background)
    assert not np.array_equal(train_0.background, render_image(SMALL, "train", 1).background)
    # Image i does not depend on how many images the split has.
    longer = dataclasses.replace(SMALL, num_train=SMALL.num_train + 5)
    np.testing.assert_array_equal(render_image(longer, "train", 0).image, train_0.image)


# --------------------------------------------------------------------------- idempotence, errors


def test_rerun_with_same_spec_does_not_rewrite(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [p for p in dataset.rglob("*")] + [dataset]
    before = {p: p.stat().st_mtime_ns for p in files}

    def _fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("render_image must not run for an existing dataset")

    monkeypatch.setattr(digits_coco, "render_image", _fail)
    assert generate_digits_coco(str(dataset), SMALL) == dataset
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert not _tmp_siblings(dataset)


def test_mismatched_spec_raises_and_keeps_data(dataset: Path) -> None:
    before = _snapshot(dataset)
    with pytest.raises(ValueError, match="another spec"):
        generate_digits_coco(dataset, dataclasses.replace(SMALL, num_val=5))
    assert _snapshot(dataset) == before
    assert not _tmp_siblings(dataset)


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "busy"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_digits_coco(root, SMALL)
    assert (root / "notes.txt").read_text() == "mine"


def test_empty_folder_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    generate_digits_coco(root, dataclasses.replace(SMALL, num_train=1, num_val=1))
    assert (root / "spec.json").is_file()
    assert not _tmp_siblings(root)


def test_crash_leaves_neither_root_nor_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = digits_coco.render_image
    calls = []

    def _crash_on_third(spec: DigitsCocoSpec, split: str, index: int) -> Any:
        calls.append(index)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_render(spec, split, index)

    monkeypatch.setattr(digits_coco, "render_image", _crash_on_third)
    root = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_digits_coco(root, SMALL)
    assert len(calls) == 3
    assert not root.exists()
    assert not _tmp_siblings(root)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": -3}, "num_val"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 5, "max_objects": 2}, "max_objects"),
        ({"min_digit_px": 4}, "min_digit_px"),
        ({"min_digit_px": 50, "max_digit_px": 40}, "max_digit_px"),
        ({"image_size": 48}, "max_digit_px"),
        ({"seed": -1}, "seed"),
        ({"version": 99}, "version"),
    ],
)
def test_invalid_spec_names_the_field(changes: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=rf"DigitsCocoSpec\.{field}=") as info:
        dataclasses.replace(SMALL, **changes)
    spec_after = {**SMALL.to_dict(), **changes}
    assert f"{field}={spec_after[field]!r} is invalid: must" in str(info.value)


def test_non_int_spec_field_is_rejected() -> None:
    with pytest.raises(TypeError, match="image_size"):
        DigitsCocoSpec(image_size=320.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- consumers


def test_pycocotools_loads_it(dataset: Path) -> None:
    coco_module = pytest.importorskip("pycocotools.coco")
    for split in ("train", "val"):
        raw = _coco(dataset, split)
        api = coco_module.COCO(str(dataset / "annotations" / f"instances_{split}.json"))
        assert sorted(api.getImgIds()) == sorted(image["id"] for image in raw["images"])
        assert api.getCatIds() == list(range(1, 11))
        assert len(api.getAnnIds()) == len(raw["annotations"])
        first = raw["images"][0]["id"]
        assert len(api.getAnnIds(imgIds=[first])) == len(_anns_by_image(raw)[first])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = [str(out), "--num-train", "3", "--num-val", "2", "--image-size", "96"]
    args += ["--min-digit-px", "12", "--max-digit-px", "40", "--seed", "7"]
    assert digits_coco.main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "train: 3 images" in printed and "val: 2 images" in printed
    assert json.loads((out / "spec.json").read_text())["seed"] == 7
    assert digits_coco.main(args) == 0
    assert "found existing" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        digits_coco.main([str(tmp_path / "bad"), "--image-size", "64"])
