"""The workflow's view of a multi-process run: :class:`Distributed`, with a single-process
default and a ``torch.distributed`` implementation (nccl or gloo; launched by the adapter).

The official QDrop code averages observer statistics across ranks and then keeps rank 0's scales;
here every rank ends with the ranges of all ranks' data.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rdoq_plugins.modules import quantizers


class Distributed(Protocol):
    """Collective operations the workflow's steps use."""

    rank: int
    world: int

    def barrier(self) -> None: ...

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (so that every rank takes the same decision)."""

    def tensor_mean(self, t: Tensor) -> Tensor:
        """The element-wise mean of ``t`` over ranks."""

    def reduce_observers(self, model: nn.Module) -> None:
        """Gives every rank's activation observers the ranges of all ranks' data."""

    def sum(self, value: float) -> float:
        """The sum of ``value`` over ranks."""

    def sum_gradients(self, params: list[Tensor]) -> None:
        """Sums the gradients of ``params`` over ranks, in place (a tensor no rank has a gradient
        for keeps ``None``)."""

    def gather(self, value: list[int]) -> list[list[int]]:
        """Every rank's ``value``, in rank order."""


class SingleProcess:
    """One process: every collective is the identity."""

    rank = 0
    world = 1

    def barrier(self) -> None:
        return None

    def mean(self, value: float) -> float:
        return value

    def tensor_mean(self, t: Tensor) -> Tensor:
        return t

    def reduce_observers(self, model: nn.Module) -> None:
        return None

    def sum(self, value: float) -> float:
        return value

    def sum_gradients(self, params: list[Tensor]) -> None:
        return None

    def gather(self, value: list[int]) -> list[list[int]]:
        return [list(value)]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class TorchDistributed:
    """The initialised default ``torch.distributed`` process group."""

    def __init__(self) -> None:
        if not is_distributed():
            raise RuntimeError("torch.distributed is not initialised")
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()

    def barrier(self) -> None:
        dist.barrier()

    def mean(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def tensor_mean(self, t: Tensor) -> Tensor:
        out = t.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    @torch.no_grad()
    def reduce_observers(self, model: nn.Module) -> None:
        """Envelope (min / max) or batch-weighted average of every activation observer, then the
        quantizers' scale and zero point refreshed from it."""
        for q in quantizers(model, weight=False):
            obs = q.observer
            n = obs.num_batches.to(torch.float64)
            if obs.averaging:
                total = n.clone()
                dist.all_reduce(total)
                for buf in (obs.lo, obs.hi):
                    weighted = buf.double() * n
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

    def sum(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t)

    def sum_gradients(self, params: list[Tensor]) -> None:
        if not params:
            return
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        dist.all_reduce(has)
        live = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
        dist.all_reduce(flat)  # one collective for all tensors
        offset = 0
        for p in live:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def gather(self, value: list[int]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.world)]
        dist.all_gather_object(out, list(value))
        return out


def current() -> SingleProcess | TorchDistributed:
    """The process group this process belongs to (:class:`SingleProcess` when none)."""
    return TorchDistributed() if is_distributed() else SingleProcess()


def barrier() -> None:
    """Waits for every rank (nothing to wait for in a single process)."""
    current().barrier()
