"""Two gloo processes calibrate and reconstruct exactly as one process does (fixed global batches,
each step computed by the rank that holds its chunk, gradients summed)."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import reconstruct_units
from rdoq_plugins.workflow.calib_subset import rank_batches
from rdoq_plugins.workflow.distributed import SingleProcess, TorchDistributed
from tests.core.recon.conftest import small_cnn

UNITS = ["0", "1", "2"]


def _quantized(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(seed)
    fp = small_cnn()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 2}, "a_qconfig": {"observer": "AvgMSEObserver"}}))
    data = torch.randn(7 * 3, 4, 6, 6)
    return fp, model, [data[i * 3:(i + 1) * 3] for i in range(7)]


def _run(rank: int, world: int, out: Path) -> dict[str, torch.Tensor]:
    group = TorchDistributed() if world > 1 else SingleProcess()
    fp, model, images = _quantized()
    mine = [torch.cat([images[i] for i in items]) for items in rank_batches(list(range(7)), 1, rank, world)]
    calibrate(model, mine, lambda m, b: m(b))
    group.reduce_observers(model)
    cfg = ReconConfig(iters=40, batch_size=2, drop_prob=0.5)
    reconstruct_units(model, fp, UNITS, mine, lambda m, b: m(b), QDropReconstructor(cfg, 3, group=group))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save(state, out)
    return state


def _worker(rank: int, world: int, port: int, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _run(rank, world, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_processes_reconstruct_as_one(world: int, tmp_path: Path) -> None:
    single = _run(0, 1, tmp_path / "single.pth")
    out = tmp_path / "shared.pth"
    mp.spawn(_worker, args=(world, 29600 + world, out), nprocs=world, join=True)
    shared = torch.load(out, weights_only=True)
    assert single.keys() == shared.keys()
    worst = max(float((single[k].float() - shared[k].float()).abs().max()) for k in single)
    assert worst < 1e-4, worst
    # The shared run trained: its rounding differs from the nearest rounding it started from.
    _, fresh, _ = _quantized()
    alphas = [k for k in single if k.endswith("alpha")]
    assert alphas and any(not torch.equal(single[k], fresh.state_dict()[k]) for k in alphas if k in fresh.state_dict())
