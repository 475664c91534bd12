"""Spilled chunks read a window at a time: each read ``passes`` times per run, draws kept inside
the loaded window."""
from __future__ import annotations

import threading
from collections import Counter

import torch

from rdoq_plugins.recon.disk_windows import DiskWindows


class Disk:
    """Counts reads; chunk ``i`` loads as ``(i,)``."""

    def __init__(self) -> None:
        self.reads: Counter[int] = Counter()
        self._lock = threading.Lock()

    def load(self, i: int) -> tuple[int]:
        with self._lock:
            self.reads[i] += 1
        return (i,)


def test_one_window_draws_what_memory_draws_and_reads_each_chunk_once() -> None:
    disk = Disk()
    windows = DiskWindows(disk.load, passes=3, window_bytes=1 << 20)
    spilled, sizes = [1, 3, 4], [100] * 5
    windows.plan(50)
    g = torch.Generator().manual_seed(0)
    wanted = [int(spilled[int(k)]) for k in torch.randint(3, (40,), generator=g)]
    assert [windows.draw(i, spilled, sizes, 5, g) for i in wanted] == wanted
    assert disk.reads == Counter({1: 1, 3: 1, 4: 1})
    windows.close()


def test_small_windows_read_each_chunk_once_per_pass() -> None:
    disk = Disk()
    passes, chunks, per_window = 2, 6, 2
    windows = DiskWindows(disk.load, passes=passes, window_bytes=per_window * 100)
    spilled, sizes = list(range(chunks)), [100] * chunks
    steps = 10 * passes * chunks  # ten draws per chunk and pass
    windows.plan(steps)
    g = torch.Generator().manual_seed(1)
    drawn: Counter[int] = Counter()
    for _ in range(steps):
        got = windows.draw(int(torch.randint(chunks, (1,), generator=g)), spilled, sizes, chunks, g)
        assert got in windows.window and len(windows.window) == per_window
        drawn[got] += 1
    assert disk.reads == Counter({i: passes for i in range(chunks)})
    assert set(drawn) == set(range(chunks)) and sum(drawn.values()) == steps
    for _ in range(30):  # draws past the announced run stay in the last window
        windows.draw(0, spilled, sizes, chunks, g)
    assert sum(disk.reads.values()) == passes * chunks
    windows.close()
    assert windows.window == {}


def test_plan_restarts_the_rotation() -> None:
    disk = Disk()
    windows = DiskWindows(disk.load, passes=1, window_bytes=100)  # one chunk per window
    spilled, sizes = [0, 1, 2], [100] * 3
    g = torch.Generator().manual_seed(2)
    for plan in range(2):
        windows.plan(3)
        firsts = [windows.draw(i, spilled, sizes, 3, g) for i in range(3)]
        assert sorted(firsts) == [0, 1, 2]  # one draw per window, every chunk's window visited
        assert sum(disk.reads.values()) == 3 * (plan + 1)
    windows.close()
