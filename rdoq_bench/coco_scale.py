"""A few COCO-format images at COCO's test size, for checks at the size users run (1333x800).

COCO itself cannot be downloaded here. What matters for memory, caching and index arithmetic is
the image size and the model width, not the content, so each image is a smooth random background
with a handful of filled boxes, written as JPEG with a COCO ``instances_<split>.json`` next to it::

    root/
      train/000001.jpg ...      (the same images serve as val/)
      annotations/instances_train.json
      annotations/instances_val.json

Deterministic: image ``i`` comes from ``numpy.random.default_rng((seed, i))``. The categories are
the ones given (COCO's 80 names for the shipped COCO configs). No mmdet or mmcv import.

Command line::

    python -m rdoq_bench.coco_scale OUT_DIR --num-images N [--width 1333] [--height 800]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def _image(rng: np.random.Generator, width: int, height: int, num_boxes: int) -> tuple[np.ndarray, list[list[float]]]:
    """An RGB image and its ``[x, y, w, h]`` boxes."""
    coarse = rng.uniform(0, 255, size=(height // 40 + 2, width // 40 + 2, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy()
    boxes = []
    for _ in range(num_boxes):
        w, h = (int(v) for v in rng.integers(32, min(width, height) // 2, size=2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        img[y:y + h, x:x + w] = rng.integers(0, 255, size=3, dtype=np.uint8)
        boxes.append([float(x), float(y), float(w), float(h)])
    return img, boxes


def generate_coco_scale(root: Path, classes: Sequence[str], num_images: int = 2, width: int = 1333,
                        height: int = 800, seed: int = 0) -> Path:
    """Writes ``num_images`` images of ``width x height`` and their annotations; returns ``root``."""
    images, annotations = [], []
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for i in range(1, num_images + 1):
        rng = np.random.default_rng((seed, i))
        img, boxes = _image(rng, width, height, num_boxes=4)
        name = f"{i:06d}.jpg"
        Image.fromarray(img).save(root / "train" / name, quality=90)
        images.append({"id": i, "file_name": name, "width": width, "height": height})
        for x, y, w, h in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "bbox": [x, y, w, h], "area": w * h,
                                "iscrowd": 0, "category_id": int(rng.integers(1, len(classes) + 1))})
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
    data = json.dumps({"images": images, "annotations": annotations, "categories": categories})
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}.json").write_text(data)
    return root


def data_options(root: Path) -> dict[str, str | int]:
    """``--cfg-options`` that point a shipped COCO config's train and test sets at ``root``."""
    options: dict[str, str | int] = {"data.workers_per_gpu": 0}
    for split, ann in (("train", "train"), ("val", "val"), ("test", "val")):
        options[f"data.{split}.ann_file"] = str(root / "annotations" / f"instances_{ann}.json")
        options[f"data.{split}.img_prefix"] = str(root / "train") + "/"
    return options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--num-images", type=int, default=2)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--classes", nargs="+", default=[str(k) for k in range(80)])
    args = parser.parse_args(argv)
    generate_coco_scale(args.out, args.classes, args.num_images, args.width, args.height)


if __name__ == "__main__":
    main()
