"""The reconstruction cache: memory budget and spills, storage dtype, disk windows, spill folders."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from rdoq_plugins.recon import ChunkCache, remove_stale_spills
from rdoq_plugins.recon.cache import SPILL_PREFIX


def _chunk(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1-sample chunk whose values name it."""
    return tuple(torch.full((1, 2, 4, 4), float(i)) + k for k in range(3))  # type: ignore[return-value]


def test_chunk_cache_spills_to_disk_within_its_budget(tmp_path: Path) -> None:
    chunk = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    per_chunk = 3 * chunk[0].numel() * 4
    with ChunkCache("cpu", max_bytes=per_chunk * 2, spill_dir=tmp_path) as cache:
        for i in range(5):
            cache.add(*(t + i for t in chunk))
        assert cache.bytes_in_memory == 2 * per_chunk and cache.bytes_on_disk == 3 * per_chunk
        assert len(list(tmp_path.iterdir())) == 1
        for i in range(5):
            assert torch.equal(cache.chunk(i)[2], chunk[2] + i)
        q, _, _ = cache.sample(1, torch.Generator().manual_seed(0))
        assert q.shape == (1, 4, 8, 8)
    assert list(tmp_path.iterdir()) == []


def test_float16_storage_halves_the_bytes_and_hands_out_float32() -> None:
    x = torch.randn(2, 3, 8, 8)
    with ChunkCache(store_dtype=torch.float16) as half, ChunkCache() as full:
        half.add(x, x, x)
        full.add(x, x, x)
        assert half.bytes_in_memory * 2 == full.bytes_in_memory
        q, _, _ = half.chunk(0)
        assert q.dtype == torch.float32 and torch.equal(q, x.half().float())


def test_a_chunk_beyond_float16_range_stays_float32() -> None:
    x = torch.randn(1, 4)
    big = x * 1e6
    with ChunkCache(store_dtype=torch.float16) as cache:
        cache.add(x, x, big)
        assert cache.chunks_stored_fp32 == 1 and torch.equal(cache.chunk(0)[2], big)


def test_spilled_chunks_in_one_window_draw_what_memory_draws(tmp_path: Path) -> None:
    draws = []
    for budget in (1 << 30, 0):
        with ChunkCache("cpu", budget, tmp_path) as cache:
            for i in range(6):
                cache.add(*_chunk(i))
            cache.plan(50)
            g = torch.Generator().manual_seed(3)
            draws.append([int(cache.sample(1, g)[0][0, 0, 0, 0]) for _ in range(50)])
            assert cache.chunk_loads == (0 if budget else 6)  # one window: each file read once
    assert draws[0] == draws[1]


def test_disk_windows_read_each_chunk_per_pass_and_draw_uniformly(tmp_path: Path) -> None:
    steps, chunks, passes = 6000, 12, 2
    per_chunk = 3 * _chunk(0)[0].numel() * 4
    with ChunkCache("cpu", 2 * per_chunk, tmp_path, disk_passes=passes, window_bytes=3 * per_chunk) as cache:
        for i in range(chunks):
            cache.add(*_chunk(i))
        assert len(cache.spilled) == chunks - 2
        cache.plan(steps)
        g = torch.Generator().manual_seed(0)
        counts = Counter(int(cache.sample(1, g)[0][0, 0, 0, 0]) for _ in range(steps))
        assert cache.chunk_loads == passes * (chunks - 2)  # each spilled chunk read once per pass
        assert cache.bytes_read == cache.chunk_loads * per_chunk
    expected = steps / chunks
    assert set(counts) == set(range(chunks))
    assert all(abs(c - expected) < 0.25 * expected for c in counts.values()), counts


def test_close_and_stale_spill_folders_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{SPILL_PREFIX}killed"
    stale.mkdir()
    (stale / "000000.pt").write_bytes(b"x")
    (tmp_path / "keep").mkdir()
    assert remove_stale_spills(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]
    with pytest.raises(RuntimeError, match="boom"), ChunkCache("cpu", 0, tmp_path) as cache:
        cache.add(*_chunk(0))
        assert any(p.name.startswith(SPILL_PREFIX) for p in tmp_path.iterdir())
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]
