"""Calibration batches: N images from the train or test pipeline, split across ranks.

QDrop calibrates on 256 images from the train pipeline (2 per GPU). The images are a fixed random
subset of the dataset (seed 1005, as QDrop), cut into fixed global batches that are dealt whole to
the ranks (so a batch holds the same images and padding on any number of processes), and collated
once so that every unit's reconstruction sees the same batches.

Collated at 1333x800 an image is 12.8 MB of float32, 3.3 GB at 256 images. A
:class:`~mmdet_ext.compact_batch.CompactBatch` keeps each batch's images as the uint8 pixels they
were normalized from (3.2 MB an image) and normalizes them again, bit for bit, when read.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mmcv import Config
from mmcv.parallel import collate
from mmdet.datasets import build_dataset, replace_ImageToTensor

from mmdet_ext.compact_batch import CompactBatch
from rdoq_plugins.config.errors import check_keys, get_choice, get_int
from rdoq_plugins.memory import release_free_memory
from rdoq_plugins.workflow.calib_subset import calib_subset, rank_batches
from rdoq_plugins.workflow.calib_subset import check_calib_size as check_items

CALIB_DEFAULTS = {"split": "train", "samples_per_gpu": 2, "seed": 1005}


def calib_options(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validates the quant section's ``calib`` key: ``{split, samples_per_gpu, seed}``."""
    data = dict(section or {})
    check_keys(data, CALIB_DEFAULTS.keys(), "calib")
    return {
        "split": get_choice(data, "split", CALIB_DEFAULTS["split"], "calib", ["train", "test"]),
        "samples_per_gpu": get_int(data, "samples_per_gpu", CALIB_DEFAULTS["samples_per_gpu"], "calib", 1),
        "seed": get_int(data, "seed", CALIB_DEFAULTS["seed"], "calib", 0),
    }


def calib_dataset(cfg: Config, split: str) -> Any:
    """The dataset whose pipeline calibration uses (train: with its augmentation, as QDrop)."""
    ds_cfg = copy.deepcopy(cfg.data.train if split == "train" else cfg.data.test)
    while "dataset" in ds_cfg and "pipeline" not in ds_cfg:  # RepeatDataset and friends
        ds_cfg = ds_cfg.dataset
    if split == "test":
        ds_cfg.test_mode = True
        ds_cfg.pipeline = replace_ImageToTensor(ds_cfg.pipeline)
    return build_dataset(ds_cfg)


def check_calib_size(dataset: Any, num_images: int) -> None:
    """More calibration images than the dataset has is an error, raised before any work."""
    check_items(num_images, len(dataset))


def calib_batches(dataset: Any, num_images: int, samples_per_gpu: int, seed: int, rank: int,
                  world: int, limit: int | None = None) -> list[CompactBatch]:
    """This rank's collated calibration batches, images kept compact. With ``limit``, only the
    batches that hold the first ``limit`` images (the same batches a full list starts with)."""
    order = calib_subset(len(dataset), num_images, seed)
    batches = []
    for items in rank_batches(order, samples_per_gpu, rank, world, limit):
        samples = [dataset[i] for i in items]
        batches.append(CompactBatch(collate(samples, samples_per_gpu=len(samples))))
        del samples
        release_free_memory()  # the pipeline's float copies are freed: let the OS have them
    return batches
