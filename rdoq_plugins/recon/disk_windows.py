"""Spilled cache chunks read back a window at a time, so disk traffic is bounded by the run.

A reconstruction step draws one chunk uniformly at random. When most chunks are on disk, reading
the drawn chunk at every step costs a whole file per step (QDrop at 256 images: ~90 TB over a run).
:class:`DiskWindows` instead loads the spilled chunks a few at a time (a *window*), in ``passes``
random orders over the run; a draw that lands on a spilled chunk outside the current window is
redirected to a random chunk of the window. Each window serves draws in proportion to its chunks
and the next one loads in a background thread, so every chunk is read ``passes`` times per run and
is drawn, over the run, as often as with everything in memory. When all spilled chunks fit in one
window, draws are exactly those of an in-memory cache.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

Entry = tuple[Any, ...]  # a loaded chunk: (quant_in, fp_in, fp_out, context)


class DiskWindows:
    """The rotation over the spilled chunks of one cache.

    Args:
        load: reads chunk ``i`` from disk.
        passes: how often each spilled chunk is read over the announced run.
        window_bytes: memory for the chunks of one window (at least one chunk is loaded).
    """

    def __init__(self, load: Callable[[int], Entry], passes: int = 2, window_bytes: int = 1 << 30) -> None:
        self.load = load
        self.passes = max(1, passes)
        self.window_bytes = window_bytes
        self.steps: int | None = None
        self.schedule: list[list[int]] = []
        self.window: dict[int, Entry] = {}
        self._no = -1
        self._draws = 0
        self._quota = 0
        self._per_member = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._next: Future[dict[int, Entry]] | None = None
        self.wait_s = 0.0

    def plan(self, steps: int) -> None:
        """Announces a run of ``steps`` draws; restarts the rotation."""
        self._drop_prefetch()
        self.steps = max(1, steps)
        self.schedule, self.window, self._no, self._draws = [], {}, -1, 0

    def _windows(self, spilled: Sequence[int], sizes: Sequence[int], generator: torch.Generator) -> list[list[int]]:
        """The spilled chunks in ``passes`` random orders, cut into windows."""
        per_window = max(1, int(self.window_bytes // max(1, max(sizes[i] for i in spilled))))
        if per_window >= len(spilled):
            return [list(spilled)]
        windows = []
        for _ in range(self.passes):
            order = [spilled[int(k)] for k in torch.randperm(len(spilled), generator=generator)]
            windows += [order[k:k + per_window] for k in range(0, len(order), per_window)]
        return windows

    def _load_window(self, indices: list[int]) -> dict[int, Entry]:
        return {i: self.load(i) for i in indices}

    def _advance(self, spilled: Sequence[int], sizes: Sequence[int], num_chunks: int,
                 generator: torch.Generator) -> None:
        """Makes the next window current and starts loading the one after it."""
        if not self.schedule:
            self.schedule = self._windows(spilled, sizes, generator)
            steps = self.steps if self.steps is not None else num_chunks * self.passes
            expected = steps * len(spilled) / num_chunks  # draws that land on spilled chunks
            self._per_member = expected / sum(len(w) for w in self.schedule)
            self._no = -1
        self._no += 1
        # A window serves draws in proportion to its chunks, so a short last window is not favoured.
        self._quota = max(1, round(self._per_member * len(self.schedule[self._no])))
        start = time.perf_counter()
        self.window = self._next.result() if self._next is not None else self._load_window(self.schedule[self._no])
        self.wait_s += time.perf_counter() - start
        self._next = None
        if self._no + 1 < len(self.schedule):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1)
            self._next = self._pool.submit(self._load_window, self.schedule[self._no + 1])
        self._draws = 0

    def draw(self, i: int, spilled: Sequence[int], sizes: Sequence[int], num_chunks: int,
             generator: torch.Generator) -> int:
        """The chunk to use for a uniform draw ``i`` that landed on a spilled chunk."""
        last = self._no == len(self.schedule) - 1  # the last window serves to the run's end
        if not self.window or (not last and self._draws >= self._quota):
            self._advance(spilled, sizes, num_chunks, generator)
        self._draws += 1
        if i in self.window:
            return i
        members = list(self.window)
        return members[int(torch.randint(len(members), (1,), generator=generator))]

    def _drop_prefetch(self) -> None:
        if self._next is not None:
            self._next.cancel()
            try:
                self._next.result()
            except Exception:  # noqa: BLE001  (a prefetch nobody waits for)
                pass
            self._next = None

    def close(self) -> None:
        self._drop_prefetch()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.window = {}
