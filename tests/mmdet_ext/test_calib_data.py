"""Calibration data (``mmdet_ext.calib_data``): seeded batches of the calibration split, held compact,
and a limit that takes the first batches of the same draw."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from mmcv import Config

from mmdet_ext.calib_data import calib_batches, calib_dataset
from tests.mmdet_ext.conftest import batch_images


def test_calibration_batches_are_compact_and_limited(make_config: Callable[..., Path]) -> None:
    dataset = calib_dataset(Config.fromfile(str(make_config(name="compact"))), "train")
    full = calib_batches(dataset, 8, 2, 1005, 0, 1)
    first = calib_batches(dataset, 8, 2, 1005, 0, 1, limit=3)
    assert len(full) == 4 and len(first) == 2 and all(b.compact for b in full)
    for a, b in zip(first, full):
        assert torch.equal(batch_images(a), batch_images(b))
