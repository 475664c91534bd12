"""Joining the process group a launcher started: ``none``, ``pytorch`` (torchrun) or ``slurm``
(srun); nccl on GPUs, gloo on CPUs. The same for every framework's tools."""
from __future__ import annotations

import datetime
import os
import subprocess

import torch
import torch.distributed as dist

LAUNCHERS = ("none", "pytorch", "slurm")


def slurm_environment() -> None:
    """The variables ``torch.distributed`` reads, from the ones srun sets."""
    os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
    os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
    os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ["SLURM_NODELIST"]
        os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1")


def init_distributed(launcher: str, local_rank: int | None = None,
                     timeout: datetime.timedelta | None = None) -> tuple[int, int]:
    """Joins the process group of ``launcher`` (once; later calls return the same group) and
    returns ``(rank, world_size)``; ``(0, 1)`` for ``none``. ``timeout``: how long a collective
    may wait (a rank waiting while rank 0 quantizes alone needs hours)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher {launcher!r}: allowed {', '.join(LAUNCHERS)}")
    if launcher == "none":
        return 0, 1
    if launcher == "slurm":
        slurm_environment()
    if local_rank is not None:
        os.environ["LOCAL_RANK"] = str(local_rank)
    if not dist.is_initialized():
        kwargs = {"timeout": timeout} if timeout is not None else {}
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
            dist.init_process_group("nccl", **kwargs)
        else:
            dist.init_process_group("gloo", **kwargs)
    return dist.get_rank(), dist.get_world_size()
