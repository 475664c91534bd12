"""Which cached chunk each reconstruction step reads, the same for any number of processes.

QDrop samples one calibration batch per step. The calibration batches are fixed global batches
(batch ``k`` holds the same images whatever the world size) dealt whole to the ranks (``k % world``),
so each rank caches the chunks of its own batches. Every step draws one chunk of the *global* list
(in batch order, then call order, as a single process stores them) from a generator seeded with the
run's seed and the step, and the rank that holds it computes the step; the others contribute zero
gradients to a summed all-reduce. A run on any number of processes therefore reads the same samples
and takes the same steps as a single process, up to floating-point summation order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

_STEP_STRIDE = 1_000_003  # a prime: seeds of consecutive steps and runs do not collide


class ShareGroup(Protocol):
    """The collective operations a shared reconstruction needs (see ``workflow.distributed``)."""

    rank: int
    world: int

    def sum(self, value: float) -> float: ...

    def sum_gradients(self, params: list[torch.Tensor]) -> None: ...

    def gather(self, value: list[int]) -> list[list[int]]: ...


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s draws and dropping masks."""
    return (seed * _STEP_STRIDE + step) % (2**63 - 1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for step ``step``'s draws."""
    return torch.Generator().manual_seed(step_seed(seed, step))


def chunk_owners(counts: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``(rank, local chunk index)`` of every chunk of the global list.

    ``counts[r][j]`` is the number of chunks rank ``r`` cached from its ``j``-th batch, which is
    global batch ``r + j * world``; the global list is in global batch order.
    """
    world = len(counts)
    offsets = [[0] * len(c) for c in counts]
    for r, c in enumerate(counts):
        for j in range(1, len(c)):
            offsets[r][j] = offsets[r][j - 1] + c[j - 1]
    owners: list[tuple[int, int]] = []
    batches = sum(len(c) for c in counts)
    for k in range(batches):
        r, j = k % world, k // world
        if j >= len(counts[r]):
            raise ValueError(f"rank {r} holds {len(counts[r])} batches; global batch {k} would be its {j + 1}th")
        owners += [(r, offsets[r][j] + c) for c in range(counts[r][j])]
    return owners


class ChunkDraw:
    """Draws each step's chunk from the global list; :meth:`local` says whether this rank holds it.

    Args:
        owners: ``(rank, local index)`` of every global chunk (:func:`chunk_owners`).
        rank: this process's rank.
    """

    def __init__(self, owners: Sequence[tuple[int, int]], rank: int = 0) -> None:
        if not owners:
            raise RuntimeError("no cached chunks to draw from")
        self.owners = list(owners)
        self.rank = rank

    @classmethod
    def single(cls, num_chunks: int) -> ChunkDraw:
        """One process holding every chunk."""
        return cls([(0, i) for i in range(num_chunks)])

    @classmethod
    def shared(cls, batch_chunks: Sequence[int], group: ShareGroup | None) -> ChunkDraw:
        """From this rank's chunks per batch, gathered over ``group`` (one process when None)."""
        if group is None or group.world == 1:
            return cls.single(sum(batch_chunks))
        return cls(chunk_owners(group.gather(list(batch_chunks))), group.rank)

    def __len__(self) -> int:
        return len(self.owners)

    @property
    def local_share(self) -> float:
        """The fraction of the global chunks this rank holds."""
        return sum(r == self.rank for r, _ in self.owners) / len(self.owners)

    def local(self, generator: torch.Generator) -> int | None:
        """The local index of the drawn chunk if this rank holds it, else None."""
        rank, index = self.owners[int(torch.randint(len(self.owners), (1,), generator=generator))]
        return index if rank == self.rank else None


def batch_counts(cache: Any) -> list[int]:
    """Chunks per calibration batch of a cache filled batch by batch (one batch when unmarked)."""
    marks = getattr(cache, "batch_chunks", None)
    return list(marks) if marks else [getattr(cache, "num_chunks", 1)]
