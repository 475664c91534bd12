"""Test results of a distributed mmdet run, collected on CPU (gloo) or GPU (nccl).

mmdet 2.28's result collection allocates CUDA tensors, so CPU runs need their own. Joining the
process group (:func:`rdoq_plugins.workflow.init_distributed`, not mmcv's ``init_dist``, which calls
``torch.cuda.set_device``) and the quantization steps' collectives are the core's.
"""
from __future__ import annotations

from typing import Any

import torch.distributed as dist

from rdoq_plugins.workflow.distributed import is_distributed


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def gather_results(part: list[Any], size: int) -> list[Any]:
    """All ranks' test results in dataset order (the distributed sampler deals them round-robin)."""
    if not is_distributed():
        return part
    parts: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, part)
    ordered = [r for group in zip(*parts) for r in group]
    return ordered[:size]
