"""Which dataset items calibrate: a fixed random subset (QDrop: 256 train images, seed 1005),
checked against the dataset's size before any work."""
from __future__ import annotations

import torch

from rdoq_plugins.config import ConfigError


def check_calib_size(num_items: int, available: int, what: str = "images") -> None:
    """More calibration items than the split has is an error naming the ``calibrate`` key."""
    if num_items > available:
        raise ConfigError("calibrate", f"more calibration {what} than the calibration split has ({available})",
                          num_items, f"an integer in [1, {available}]")


def calib_subset(available: int, num_items: int, seed: int, what: str = "images") -> list[int]:
    """The dataset indices that calibrate, in the order they are read: the first ``num_items`` of
    a permutation seeded with ``seed`` (the same subset for every run and every process count)."""
    check_calib_size(num_items, available, what)
    return torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:num_items].tolist()


def rank_batches(order: list[int], per_batch: int, rank: int, world: int,
                 limit: int | None = None) -> list[list[int]]:
    """This rank's calibration batches: the global batches ``order[k * per_batch:(k + 1) * per_batch]``
    with ``k % world == rank``, so every batch holds the same items whatever the world size (see
    :mod:`rdoq_plugins.recon.draw`). With ``limit``, only the global batches that hold the first
    ``limit`` items."""
    count = -(-len(order) // per_batch)
    if limit is not None:
        count = min(count, -(-limit // per_batch))
    return [order[k * per_batch:(k + 1) * per_batch] for k in range(rank, count, world)]
