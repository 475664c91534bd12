"""Calibration frames: a fixed random subset of the train or test split, collated by the
dataset, as CPU tensors."""
from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pcdet_ext.detector import load_data_to_device
from rdoq_plugins.workflow.calib_subset import calib_subset
from rdoq_plugins.workflow.calib_subset import check_calib_size as check_items


def calib_dataset_cfg(data_cfg: Any, split: str, augment: bool) -> tuple[Any, bool]:
    """The dataset config and ``training`` flag calibration frames are read with.

    OpenPCDet datasets read ``INFO_PATH[mode]`` / ``DATA_SPLIT[mode]`` with mode ``test`` when
    ``training=False``; train frames without augmentation point the test entries at the train ones."""
    out = copy.deepcopy(data_cfg)
    if split == "test":
        return out, False
    if augment:
        return out, True
    for key in ("INFO_PATH", "DATA_SPLIT"):
        entry = out.get(key)
        if isinstance(entry, Mapping) and "train" in entry:
            entry["test"] = copy.deepcopy(entry["train"])
    return out, False


def check_calib_size(num_frames: int, dataset_len: int) -> None:
    """More calibration frames than the split has is an error, raised before any work."""
    check_items(num_frames, dataset_len, "frames")


def _seed_worker(worker: int, seed: int) -> None:
    np.random.seed(seed + 1 + worker)


def calib_batches(dataset: Any, num_frames: int, batch_size: int, seed: int, workers: int = 0) -> list[dict[str, Any]]:
    """``num_frames`` frames (a fixed random subset, ``seed``) collated by the dataset's own
    ``collate_batch`` into batches of ``batch_size``, as CPU tensors."""
    order = calib_subset(len(dataset), num_frames, seed, "frames")
    np.random.seed(seed)  # OpenPCDet's point shuffling and augmentation draw from numpy
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=dataset.collate_batch, worker_init_fn=functools.partial(_seed_worker, seed=seed))
    return [load_data_to_device(dict(b), "cpu") for b in loader]


__all__ = ["calib_batches", "calib_dataset_cfg", "check_calib_size"]
