"""Each reconstruction step's chunk comes from one global list, whatever the number of processes."""
from __future__ import annotations

import pytest

from rdoq_plugins.recon.draw import ChunkDraw, chunk_owners, step_generator
from rdoq_plugins.workflow.calib_subset import rank_batches


def test_global_chunks_follow_the_single_process_order() -> None:
    # 5 global batches of 2 chunks each, dealt whole to 2 ranks: rank 0 holds 0, 2, 4; rank 1 holds 1, 3.
    owners = chunk_owners([[2, 2, 2], [2, 2]])
    assert owners == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3), (0, 4), (0, 5)]
    with pytest.raises(ValueError, match="rank 1 holds 1 batches"):
        chunk_owners([[1, 1, 1], [1]])


def test_exactly_one_rank_holds_each_step() -> None:
    owners = chunk_owners([[1, 3], [2]])
    draws = [ChunkDraw(owners, rank) for rank in (0, 1)]
    single = ChunkDraw.single(len(owners))
    for step in range(50):
        picks = [d.local(step_generator(7, step)) for d in draws]
        assert sum(p is not None for p in picks) == 1
        global_index = single.local(step_generator(7, step))
        assert global_index is not None
        rank, local = owners[global_index]
        assert picks[rank] == local
    assert draws[0].local_share == pytest.approx(4 / 6)


def test_rank_batches_keep_every_batch_whole() -> None:
    order = list(range(10, 17))
    assert rank_batches(order, 2, 0, 1) == [[10, 11], [12, 13], [14, 15], [16]]
    assert rank_batches(order, 2, 0, 2) == [[10, 11], [14, 15]]
    assert rank_batches(order, 2, 1, 2) == [[12, 13], [16]]
    assert rank_batches(order, 2, 1, 2, limit=3) == [[12, 13]]
