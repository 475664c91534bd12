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

This module deliberately imports neither mmdet nor mmcv.

Command line::

    python -m mmdet_ext.datasets.digits_coco OUT_DIR [--num-train N] [--num-val N]
        [--image-size N] [--min-digit-px N] [--max-digit-px N] [--seed N]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
"""Category names; category id ``i + 1`` is the digit ``CLASSES[i]``."""

SPLITS: tuple[str, ...] = ("train", "val")
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""Generator versions this code can produce; bump when the output of a spec changes."""

TRAIN_SOURCE_FRACTION = 0.8  # first 80% of the source digits feed train, the rest feed val
ALPHA_THRESHOLD = 0.2  # a digit pixel belongs to the box when its alpha exceeds this
MAX_IOU = 0.3  # boxes of one image overlap each other with IoU below this ...
MAX_COVERED = 0.5  # ... and neither of two boxes is covered by the other this much or more
PLACEMENT_TRIES = 64  # random positions tried per digit before it is skipped
ASPECT_JITTER = 0.15  # digit height = width * U(1 - j, 1 + j)
MIN_LUMA_CONTRAST = 96.0  # wanted luma difference between a digit and its local background
COLOUR_CANDIDATES = 16  # random colours tried before falling back to black or white
MIN_DIGIT_PX_ALLOWED = 8  # the sources are 8x8; smaller would be a downscale
PNG_COMPRESS_LEVEL = 4  # zlib level; 6+ doubles the write time for ~8% smaller files
DESCRIPTION = "synthetic digit detection from sklearn load_digits (mmdet_ext.datasets.digits_coco)"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _invalid(field: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"DigitsCocoSpec.{field}={value!r} is invalid: {allowed}")


@dataclass(frozen=True)
class DigitsCocoSpec:
    """Everything that determines the generated dataset; equal specs give identical files.

    Args:
        image_size: side of the square RGB images in pixels.
        num_train: number of training images.
        num_val: number of validation images.
        min_objects: fewest digits pasted into one image (a digit that finds no free spot is
            skipped, so an image can rarely hold fewer).
        max_objects: most digits pasted into one image.
        min_digit_px: smallest side of an upscaled digit (sides are log-uniform).
        max_digit_px: largest side of an upscaled digit; must be below ``image_size``.
        seed: root of all random streams.
        version: generator version, one of :data:`SUPPORTED_VERSIONS`.
    """

    image_size: int = 320
    num_train: int = 1500
    num_val: int = 300
    min_objects: int = 2
    max_objects: int = 6
    min_digit_px: int = 24
    max_digit_px: int = 96
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"DigitsCocoSpec.{field.name} must be an int, got {value!r}")
        if self.num_train <= 0:
            raise _invalid("num_train", self.num_train, "must be > 0")
        if self.num_val <= 0:
            raise _invalid("num_val", self.num_val, "must be > 0")
        if self.min_objects < 1:
            raise _invalid("min_objects", self.min_objects, "must be >= 1")
        if self.max_objects < self.min_objects:
            raise _invalid(
                "max_objects", self.max_objects, f"must be >= min_objects ({self.min_objects})"
            )
        if self.min_digit_px < MIN_DIGIT_PX_ALLOWED:
            raise _invalid("min_digit_px", self.min_digit_px, f"must be >= {MIN_DIGIT_PX_ALLOWED}")
        if not self.min_digit_px <= self.max_digit_px < self.image_size:
            raise _invalid(
                "max_digit_px",
                self.max_digit_px,
                f"must satisfy min_digit_px ({self.min_digit_px}) <= max_digit_px < "
                f"image_size ({self.image_size})",
            )
        if self.seed < 0:
            raise _invalid("seed", self.seed, "must be >= 0")
        if self.version not in SUPPORTED_VERSIONS:
            raise _invalid("version", self.version, f"must be one of {SUPPORTED_VERSIONS}")

    def to_dict(self) -> dict[str, int]:
        """The spec as a plain dict (what ``spec.json`` holds)."""
        return dataclasses.asdict(self)

    def num_images(self, split: str) -> int:
        """How many images ``split`` ('train' or 'val') has."""
        return {"train": self.num_train, "val": self.num_val}[_check_split(split)]


@dataclass(frozen=True, eq=False)
class RenderedImage:
    """One generated image with its ground truth.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB image as written to disk.
        background: the same image before any digit was pasted.
        boxes: COCO ``(x, y, w, h)`` boxes, one per pasted digit.
        labels: class index ``0..9`` of each box (category id is ``label + 1``).
    """

    image: np.ndarray
    background: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]


# --------------------------------------------------------------------------- source digits


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


@lru_cache(maxsize=1)
def _load_source_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 source digits as ``(N, 8, 8)`` float32 in ``[0, 1]`` and their labels."""
    # Imported here: sklearn pulls in scipy, which is slow and only needed when generating.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.ascontiguousarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def source_indices(split: str) -> np.ndarray:
    """Indices into ``load_digits()`` that feed ``split``: the first 80% train, the rest val."""
    _check_split(split)
    total = len(_load_source_digits()[1])
    cut = int(total * TRAIN_SOURCE_FRACTION)
    return np.arange(cut) if split == "train" else np.arange(cut, total)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent stream per (seed, split, image index)."""
    key = (SPLITS.index(_check_split(split)), index)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


# --------------------------------------------------------------------------- backgrounds


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear blend between two random colours along a random direction, ``(S, S, 3)``."""
    start, end = rng.uniform(0.0, 255.0, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    span = (abs(cos) + abs(sin)) * max(size - 1, 1)  # projection range over the image corners
    offset = min(cos, 0.0) * (size - 1) + min(sin, 0.0) * (size - 1)
    coords = np.arange(size, dtype=np.float32)
    t = ((cos * coords[None, :] + sin * coords[:, None]) - offset) / span  # in [0, 1]
    return start + (end - start) * t[..., None]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    """Gaussian noise on a ``cells x cells`` grid, bilinearly upsampled to ``(S, S, 3)``."""
    grid = rng.normal(0.0, amplitude, size=(cells, cells, 3)).astype(np.float32)
    weights = _bilinear_weights(cells, size)  # (S, cells)
    rows = np.tensordot(weights, grid, axes=(1, 0))  # (S, cells, 3)
    return np.matmul(weights[None], rows)  # (S, S, 3)


def _bilinear_weights(cells: int, size: int) -> np.ndarray:
    """``(size, cells)`` matrix that linearly interpolates ``cells`` samples onto ``size``."""
    pos = np.linspace(0.0, cells - 1.0, size)
    lo = np.minimum(pos.astype(np.int64), cells - 2)
    frac = pos - lo
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), lo] = 1.0 - frac
    weights[np.arange(size), lo + 1] = frac
    return weights


def _random_rgba(rng: np.random.Generator, alpha_lo: int, alpha_hi: int) -> tuple[int, ...]:
    rgb = rng.integers(0, 256, size=3)
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]), int(rng.integers(alpha_lo, alpha_hi + 1)))


def _draw_clutter(rng: np.random.Generator, image: Image.Image) -> None:
    """Blend translucent filled rectangles and blobs, then long thin lines, onto ``image``.

    Only shapes that cannot pass for a digit are used: filled (never outlined) rectangles and
    ellipses, and straight lines far longer and thinner than any digit stroke.
    """
    size = image.width
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA mode blends translucent fills
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(-0.1 * size, size, size=2)
        w, h = rng.uniform(0.08 * size, 0.5 * size, size=2)
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=_random_rgba(rng, 40, 120))
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0.0, size, size=2)
        rx, ry = rng.uniform(0.04 * size, 0.18 * size, size=2)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_random_rgba(rng, 40, 140))
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.0, size, size=2)
        angle = rng.uniform(0.0, math.pi)
        half = rng.uniform(0.25, 0.7) * size
        dx, dy = half * math.cos(angle), half * math.sin(angle)
        width = int(rng.integers(1, 3))
        colour = _random_rgba(rng, 110, 230)
        draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=width)


def _render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient + two octaves of smooth noise + clutter, as ``(S, S, 3)`` uint8."""
    base = _gradient(rng, size)
    base += _smooth_noise(rng, size, int(rng.integers(3, 6)), rng.uniform(8.0, 28.0))
    base += _smooth_noise(rng, size, int(rng.integers(10, 17)), rng.uniform(3.0, 10.0))
    image = Image.fromarray(np.clip(np.rint(base), 0, 255).astype(np.uint8))
    _draw_clutter(rng, image)
    return np.asarray(image, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- digits


def _digit_alpha(rng: np.random.Generator, digit: np.ndarray, spec: DigitsCocoSpec) -> np.ndarray:
    """Upscale one ``8x8`` digit to a log-uniform size with aspect jitter; ``(h, w)`` alpha.

    The ``8x8`` cell becomes ``side x side * U(0.85, 1.15)`` pixels. The digit is zero-padded by
    one source pixel first, so strokes touching the cell border fade out instead of being cut
    off along a straight line (which would paste a visible rectangle).
    """
    log_side = rng.uniform(math.log(spec.min_digit_px), math.log(spec.max_digit_px + 1))
    width = min(int(math.exp(log_side)), spec.max_digit_px)
    height = max(2, round(width * rng.uniform(1.0 - ASPECT_JITTER, 1.0 + ASPECT_JITTER)))
    padded = np.pad(digit, 1)
    limit = spec.image_size
    out_size = (min(round(width * 10 / 8), limit), min(round(height * 10 / 8), limit))
    resized = Image.fromarray(padded).resize(out_size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _tight_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (exclusive ends) around the pixels with alpha above the threshold."""
    mask = alpha > ALPHA_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _overlaps(candidates: np.ndarray, placed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and covered fraction of the smaller box between ``(T, 4)`` and ``(K, 4)`` xyxy boxes.

    Both results have shape ``(T, K)``.
    """
    lt = np.maximum(candidates[:, None, :2], placed[None, :, :2])
    rb = np.minimum(candidates[:, None, 2:], placed[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=-1)
    area_c = (candidates[:, 2:] - candidates[:, :2]).prod(axis=-1)[:, None]
    area_p = (placed[:, 2:] - placed[:, :2]).prod(axis=-1)[None, :]
    return inter / (area_c + area_p - inter), inter / np.minimum(area_c, area_p)


def _find_position(
    rng: np.random.Generator,
    patch_shape: tuple[int, int],
    tight: tuple[int, int, int, int],
    placed: list[tuple[int, int, int, int]],
    size: int,
) -> tuple[int, int] | None:
    """Top-left corner for the patch whose tight box overlaps every placed box little enough.

    Little enough: IoU below ``MAX_IOU`` and less than ``MAX_COVERED`` of either box covered, so
    a small digit is never dropped onto the middle of a large one. ``None`` if no try fits.
    """
    height, width = patch_shape
    xs = rng.integers(0, size - width + 1, size=PLACEMENT_TRIES)
    ys = rng.integers(0, size - height + 1, size=PLACEMENT_TRIES)
    if not placed:
        return int(xs[0]), int(ys[0])
    offsets = np.stack([xs, ys, xs, ys], axis=1)
    candidates = (offsets + np.asarray(tight)).astype(np.float64)
    iou, covered = _overlaps(candidates, np.asarray(placed, dtype=np.float64))
    fits = ((iou < MAX_IOU) & (covered < MAX_COVERED)).all(axis=1)
    free = np.flatnonzero(fits)
    if free.size == 0:
        return None
    return int(xs[free[0]]), int(ys[free[0]])


def _contrasting_colour(
    rng: np.random.Generator, region: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """A random colour whose luma differs enough from the mean of ``region`` under ``mask``."""
    local_luma = float(region[mask].mean(axis=0) @ _LUMA)
    candidates = rng.integers(0, 256, size=(COLOUR_CANDIDATES, 3)).astype(np.float32)
    contrast = np.abs(candidates @ _LUMA - local_luma)
    good = np.flatnonzero(contrast >= MIN_LUMA_CONTRAST)
    if good.size:
        return candidates[good[0]]
    return np.full(3, 0.0 if local_luma > 127.5 else 255.0, dtype=np.float32)


def _paste_digits(
    rng: np.random.Generator, canvas: np.ndarray, spec: DigitsCocoSpec, split: str
) -> tuple[list[tuple[float, float, float, float]], list[int]]:
    """Alpha-blend ``min_objects..max_objects`` digits into ``canvas`` (float32, in place)."""
    images, labels = _load_source_digits()
    pool = source_indices(split)
    placed: list[tuple[int, int, int, int]] = []
    boxes: list[tuple[float, float, float, float]] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        source = int(pool[rng.integers(pool.size)])
        alpha = _digit_alpha(rng, images[source], spec)
        tight = _tight_box(alpha)
        if tight is None:
            continue
        corner = _find_position(rng, alpha.shape, tight, placed, spec.image_size)
        if corner is None:
            continue
        x, y = corner
        region = canvas[y : y + alpha.shape[0], x : x + alpha.shape[1]]
        colour = _contrasting_colour(rng, region, alpha > ALPHA_THRESHOLD)
        region += (colour - region) * alpha[..., None]
        box = (x + tight[0], y + tight[1], x + tight[2], y + tight[3])
        placed.append(box)
        boxes.append((float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])))
        classes.append(int(labels[source]))
    return boxes, classes


def render_image(spec: DigitsCocoSpec, split: str, index: int) -> RenderedImage:
    """Render image ``index`` (0-based) of ``split`` as :func:`generate_digits_coco` writes it."""
    rng = _image_rng(spec.seed, split, index)
    background = _render_background(rng, spec.image_size)
    canvas = background.astype(np.float32)
    boxes, labels = _paste_digits(rng, canvas, spec, split)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return RenderedImage(
        image=image, background=background, boxes=tuple(boxes), labels=tuple(labels)
    )


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
        prog="python -m mmdet_ext.datasets.digits_coco",
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
