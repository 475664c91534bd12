"""How a digits COCO image is drawn: a cluttered synthetic background, then scikit-learn's 8x8
handwritten digits, upscaled, coloured against their surroundings and pasted where they overlap
no other digit much.

Every image has its own random stream derived from ``(seed, split, image index)``
(:func:`render_image`), so a spec always draws the same pixels. scikit-learn is imported on the
first use of the source digits only; no mmdet or mmcv import.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from rdoq_bench.digits_spec import SPLITS, DigitsCocoSpec, RenderedImage, check_split

TRAIN_SOURCE_FRACTION = 0.8  # first 80% of the source digits feed train, the rest feed val
ALPHA_THRESHOLD = 0.2  # a digit pixel belongs to the box when its alpha exceeds this
MAX_IOU = 0.3  # boxes of one image overlap each other with IoU below this ...
MAX_COVERED = 0.5  # ... and neither of two boxes is covered by the other this much or more
PLACEMENT_TRIES = 64  # random positions tried per digit before it is skipped
ASPECT_JITTER = 0.15  # digit height = width * U(1 - j, 1 + j)
MIN_LUMA_CONTRAST = 96.0  # wanted luma difference between a digit and its local background
COLOUR_CANDIDATES = 16  # random colours tried before falling back to black or white
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- source digits


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
    check_split(split)
    total = len(_load_source_digits()[1])
    cut = int(total * TRAIN_SOURCE_FRACTION)
    return np.arange(cut) if split == "train" else np.arange(cut, total)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent stream per (seed, split, image index)."""
    key = (SPLITS.index(check_split(split)), index)
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
    """Render image ``index`` (0-based) of ``split`` as
    :func:`rdoq_bench.digits_coco.generate_digits_coco` writes it."""
    rng = _image_rng(spec.seed, split, index)
    background = _render_background(rng, spec.image_size)
    canvas = background.astype(np.float32)
    boxes, labels = _paste_digits(rng, canvas, spec, split)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return RenderedImage(
        image=image, background=background, boxes=tuple(boxes), labels=tuple(labels)
    )

