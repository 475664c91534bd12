"""Calibration batches hold uint8 pixels and give back the collated float tensor bit for bit."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmcv.parallel import DataContainer, collate

from mmdet_ext.calib_data import calib_dataset
from mmdet_ext.compact_batch import CompactBatch, PackedImages
from tests.mmdet_ext.conftest import batch_images


@pytest.mark.parametrize("split", ["train", "test"])
def test_compact_batch_restores_the_collated_images_exactly(split: str, make_config: Callable[..., Path]) -> None:
    dataset = calib_dataset(Config.fromfile(str(make_config(name="compact"))), split)
    collated = collate([dataset[i] for i in range(3)], samples_per_gpu=3)
    reference = batch_images(collated).clone()
    compact = CompactBatch(collated)
    assert compact.compact and compact.image_bytes * 4 == reference.numel() * reference.element_size()
    assert torch.equal(batch_images(compact), reference)
    assert set(compact) == set(collated) and compact["img_metas"] is collated["img_metas"]


def test_images_that_do_not_round_trip_are_kept_as_they_are() -> None:
    metas = [{"img_norm_cfg": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}, "img_shape": (4, 4, 3)}]
    assert PackedImages.pack(torch.full((1, 3, 4, 4), 0.5), metas) is None  # not pixel values
    batch = {"img": DataContainer([torch.full((1, 3, 4, 4), 0.5)], stack=True), "img_metas": DataContainer([metas])}
    kept = CompactBatch(batch)
    assert not kept.compact and torch.equal(batch_images(kept), torch.full((1, 3, 4, 4), 0.5))
