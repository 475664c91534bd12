"""What the digits COCO set is: its classes, splits and :class:`DigitsCocoSpec`, the settings that
determine every generated file, and :class:`RenderedImage`, one drawn image with its boxes.

Drawing is in :mod:`rdoq_bench.digits_render`, writing in :mod:`rdoq_bench.digits_coco`. No mmdet,
mmcv or scikit-learn import.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
"""Category names; category id ``i + 1`` is the digit ``CLASSES[i]``."""

SPLITS: tuple[str, ...] = ("train", "val")
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""Generator versions this code can produce; bump when the output of a spec changes."""

MIN_DIGIT_PX_ALLOWED = 8  # the sources are 8x8; smaller would be a downscale


def check_split(split: str) -> str:
    """``split`` itself if it is one of :data:`SPLITS`; ValueError otherwise."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


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
        return {"train": self.num_train, "val": self.num_val}[check_split(split)]


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

