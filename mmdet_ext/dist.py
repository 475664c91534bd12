"""Distributed runs on GPU (nccl) or CPU (gloo): launch, observer reduction, gradient averaging.

mmcv 1.x's ``init_dist`` calls ``torch.cuda.set_device`` and mmdet 2.28's result collection
allocates CUDA tensors, so CPU runs need their own path. The official QDrop code averages observer
statistics across ranks but then uses rank 0's scales; here every rank ends with the same ranges.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rdoq_plugins.modules import quantizers


def init_distributed(launcher: str, local_rank: int | None = None) -> tuple[int, int]:
    """Initialises the process group for ``launcher`` (``none``, ``pytorch`` or ``slurm``).

    Returns ``(rank, world_size)``; ``(0, 1)`` for ``none``.
    """
    if launcher == "none":
        return 0, 1
    if launcher == "slurm":
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        os.environ.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in os.environ:
            import subprocess

            nodes = os.environ["SLURM_NODELIST"]
            os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1")
    elif launcher != "pytorch":
        raise ValueError(f"--launcher {launcher!r}: allowed none, pytorch, slurm")
    if local_rank is not None:
        os.environ["LOCAL_RANK"] = str(local_rank)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


@torch.no_grad()
def reduce_observers(model: nn.Module) -> None:
    """Makes every rank's activation observers hold the ranges of all ranks' data, then refreshes
    the quantizers' scale / zero point from them: envelope (min / max) or batch-weighted average."""
    if not is_distributed():
        return
    for q in quantizers(model, weight=False):
        obs = q.observer
        n = obs.num_batches.to(torch.float64)
        if obs.averaging:
            total = n.clone()
            dist.all_reduce(total)
            for buf in (obs.lo, obs.hi):
                weighted = (buf.double() * n)
                dist.all_reduce(weighted)
                buf.copy_((weighted / total.clamp(min=1)).to(buf.dtype))
            obs.num_batches.copy_(total.long())
        else:
            dist.all_reduce(obs.lo, op=dist.ReduceOp.MIN)
            dist.all_reduce(obs.hi, op=dist.ReduceOp.MAX)
            total = obs.num_batches.clone()
            dist.all_reduce(total)
            obs.num_batches.copy_(total)
        scale, zero_point = obs.calculate_qparams(q.bits)
        q.scale.data.copy_(scale)
        q.zero_point.data.copy_(zero_point)


def average_gradients(params: list[Tensor]) -> None:
    """Averages the gradients of ``params`` across ranks (in place)."""
    if not is_distributed():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over ranks, so that every rank takes the same early-stop decision."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def tensor_mean_over_ranks(t: Tensor) -> Tensor:
    """The element-wise mean of ``t`` over ranks (a new tensor; ``t`` itself when not distributed)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def gather_results(part: list[Any], size: int) -> list[Any]:
    """All ranks' test results in dataset order (the distributed sampler deals them round-robin)."""
    if not is_distributed():
        return part
    parts: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, part)
    ordered = [r for group in zip(*parts) for r in group]
    return ordered[:size]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
