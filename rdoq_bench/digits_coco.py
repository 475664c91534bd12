"""A small, deterministic COCO-format detection dataset made from scikit-learn's bundled digits.

Nothing is downloaded: the 1797 handwritten 8x8 digits of ``sklearn.datasets.load_digits`` are
upscaled, coloured and pasted onto cluttered synthetic backgrounds, and the boxes are written as
COCO ``instances_<split>.json`` files next to the PNG images::

    root/
      train/000001.png ...
      val/000001.png ...
      annotations/instances_train.json
      annotations/instances_val.json
      spec.json

The source digits are split 80/20 by index, so validation images show handwriting that no
training image contains. Every image has its own random stream derived from
``(seed, split, image index)``, so the same :class:`DigitsCocoSpec` always gives byte-identical
annotation files and identical pixels, and growing ``num_train`` keeps the existing images.

What a dataset is lives in :mod:`rdoq_bench.digits_spec`, how an image is drawn in
:mod:`rdoq_bench.digits_render`; this module writes the files (and re-exports the public names of
both). It deliberately imports neither mmdet nor mmcv.

Command line::

    python -m rdoq_bench.digits_coco OUT_DIR [--num-train N] [--num-val N]
        [--image-size N] [--min-digit-px N] [--max-digit-px N] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from rdoq_bench.digits_render import render_image, source_indices
from rdoq_bench.digits_spec import CLASSES, SPLITS, SUPPORTED_VERSIONS, DigitsCocoSpec, RenderedImage

__all__ = [
    "CLASSES", "SPLITS", "SUPPORTED_VERSIONS", "DigitsCocoSpec", "RenderedImage", "generate_digits_coco", "main",
    "render_image", "source_indices",
]

PNG_COMPRESS_LEVEL = 4  # zlib level; 6+ doubles the write time for ~8% smaller files
# The generator's module path when version 1 was fixed; kept so version 1 files stay byte-identical.
DESCRIPTION = "synthetic digit detection from sklearn load_digits (mmdet_ext.datasets.digits_coco)"


# --------------------------------------------------------------------------- writing


def _categories() -> list[dict[str, Any]]:
    return [{"id": index + 1, "name": name} for index, name in enumerate(CLASSES)]


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    path.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")


def _write_split(folder: Path, split: str, spec: DigitsCocoSpec, progress: bool) -> None:
    """Write ``folder/<split>/*.png`` and ``folder/annotations/instances_<split>.json``."""
    image_dir = folder / split
    image_dir.mkdir()
    count = spec.num_images(split)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        image_id = index + 1
        rendered = render_image(spec, split, index)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(rendered.image).save(
            image_dir / file_name, format="PNG", compress_level=PNG_COMPRESS_LEVEL
        )
        size = spec.image_size
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for box, label in zip(rendered.boxes, rendered.labels):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": list(box),
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
        if progress and (index + 1 == count or (index + 1) % 100 == 0):
            print(f"[digits_coco] {split}: {index + 1}/{count}", file=sys.stderr, flush=True)
    coco = {
        "info": {"description": DESCRIPTION, "version": str(spec.version)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _categories(),
    }
    _write_json(folder / "annotations" / f"instances_{split}.json", coco)


def _write_dataset(folder: Path, spec: DigitsCocoSpec, progress: bool) -> None:
    """Write a complete dataset into the fresh ``folder``; ``spec.json`` goes last."""
    folder.mkdir()
    (folder / "annotations").mkdir()
    for split in SPLITS:
        _write_split(folder, split, spec, progress)
    _write_json(folder / "spec.json", spec.to_dict(), indent=2)


def _matches_existing(root: Path, spec: DigitsCocoSpec) -> bool:
    """True when ``root`` already holds this spec; raise when it holds anything else."""
    spec_file = root / "spec.json"
    if spec_file.is_file():
        try:
            stored = json.loads(spec_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{spec_file} is not valid JSON ({err}); delete {root}") from err
        if stored == spec.to_dict():
            return True
        raise ValueError(
            f"{root} holds a digits-COCO dataset generated from another spec: {stored}; "
            f"requested {spec.to_dict()}. Use another folder or delete this one."
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not a digits-COCO dataset (no spec.json)")
    return False


def _publish(tmp: Path, root: Path, spec: DigitsCocoSpec) -> None:
    """Move the finished ``tmp`` folder to ``root`` in one rename."""
    try:
        os.replace(tmp, root)  # also replaces an empty directory at root
    except OSError:
        if not _matches_existing(root, spec):  # a concurrent run may have won the race
            raise
        shutil.rmtree(tmp)


def generate_digits_coco(
    root: str | Path, spec: DigitsCocoSpec = DigitsCocoSpec(), progress: bool = False
) -> Path:
    """Generate the dataset described by ``spec`` into ``root`` unless it is already there.

    The dataset is written to the sibling folder ``<root>.tmp-<pid>`` and renamed to ``root`` at
    the end, so ``root`` is either absent or complete.

    Args:
        root: output folder; it must not exist, be empty, or hold a dataset of the same spec.
        spec: what to generate.
        progress: print progress lines to stderr.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``root`` holds a dataset generated from another spec.
        FileExistsError: ``root`` holds something that is not a generated dataset.
    """
    root = Path(root)
    if _matches_existing(root, spec):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    if tmp.exists():  # left behind by a killed process that had our pid
        shutil.rmtree(tmp)
    try:
        _write_dataset(tmp, spec, progress)
        _publish(tmp, root, spec)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    defaults = DigitsCocoSpec()
    parser = argparse.ArgumentParser(
        prog="python -m rdoq_bench.digits_coco",
        description="Generate the synthetic digits COCO detection dataset (no download).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to write")
    parser.add_argument("--num-train", type=int, default=defaults.num_train, metavar="N")
    parser.add_argument("--num-val", type=int, default=defaults.num_val, metavar="N")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, metavar="N")
    parser.add_argument("--min-digit-px", type=int, default=defaults.min_digit_px, metavar="N")
    parser.add_argument("--max-digit-px", type=int, default=defaults.max_digit_px, metavar="N")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="N")
    return parser


def _split_counts(root: Path, split: str) -> tuple[int, int]:
    path = root / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text(encoding="utf-8"))
    return len(coco["images"]), len(coco["annotations"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        spec = DigitsCocoSpec(
            image_size=args.image_size,
            num_train=args.num_train,
            num_val=args.num_val,
            min_digit_px=args.min_digit_px,
            max_digit_px=args.max_digit_px,
            seed=args.seed,
        )
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    existed = (Path(args.out_dir) / "spec.json").is_file()
    try:
        root = generate_digits_coco(args.out_dir, spec, progress=True)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    action = "found existing" if existed else "wrote"
    counts = ", ".join(
        f"{split}: {images} images / {boxes} boxes"
        for split in SPLITS
        for images, boxes in [_split_counts(root, split)]
    )
    print(f"{action} digits-COCO dataset at {root} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
