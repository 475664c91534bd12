"""The OpenPCDet detector as the quantizer runs it: the forward pass up to the head branches
without post-processing, the head outputs RD distortion is measured at, and batches moved to a
device."""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def check_supported(model: nn.Module) -> None:
    """A detector this adapter runs: OpenPCDet's ``module_list`` with a ``dense_head`` that has
    ``heads_list`` (VoxelNeXt's sparse heads) and no module after it (no second stage)."""
    modules = list(getattr(model, "module_list", None) or [])
    head = getattr(model, "dense_head", None)
    if not modules or head is None or not hasattr(head, "heads_list"):
        raise ValueError(f"{type(model).__name__}: only single-stage detectors with a sparse dense_head "
                         "holding heads_list (VoxelNeXt) are supported")
    if not any(m is head for m in modules) or modules[-1] is not head:
        raise ValueError(f"{type(model).__name__}: modules after the dense head (a second stage) are not supported")


def head_forward(model: nn.Module, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
    """Every head's branch outputs (``[{name: features}]``): the modules before the dense head, then
    each of its ``heads_list`` on the sparse BEV features, without post-processing. ``batch`` is not
    changed (the modules write into a shallow copy)."""
    data = dict(batch)
    head = model.dense_head
    for module in model.module_list:
        if module is head:
            x = data["encoded_spconv_tensor"]
            return [h(x) for h in head.heads_list]
        data = module(data)
    raise ValueError("the model's module_list does not hold its dense_head")


def head_outputs(model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
    """All head branches' features of all heads, in a fixed order: the RD distortion target."""
    return [t for pred in head_forward(model, batch) for t in pred.values()]


NON_TENSOR_KEYS = ("frame_id", "metadata", "calib", "image_paths", "ori_shape", "img_process_infos")


def _to_tensor(key: str, value: np.ndarray) -> Tensor:
    if key == "images":  # [B, H, W, C] -> [B, C, H, W], as kornia.image_to_tensor
        t = torch.from_numpy(value)
        return (t.permute(0, 3, 1, 2) if t.dim() == 4 else t.permute(2, 0, 1)).float().contiguous()
    if key == "image_shape":
        return torch.from_numpy(value).int()
    return torch.from_numpy(value).float()


def load_data_to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """OpenPCDet's ``load_data_to_gpu`` for any device, in place (numpy arrays -> float tensors,
    ``image_shape`` int, ``images`` channels first; ids and metadata untouched); tensors are moved."""
    for key, value in list(batch.items()):
        if isinstance(value, Tensor):
            batch[key] = value.to(device)
        elif isinstance(value, np.ndarray) and key not in NON_TENSOR_KEYS:
            batch[key] = _to_tensor(key, value).to(device)
    return batch


def batch_on(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A shallow copy of ``batch`` with its tensors on ``device``."""
    return load_data_to_device(dict(batch), device)


def make_run(device: torch.device) -> tuple[Callable[[nn.Module, Any], Any], Callable[[nn.Module, Any], list[Tensor]]]:
    """``run(model, batch)`` and ``outputs(model, batch)`` for :func:`quantize_sparse_detector`."""

    def run(model: nn.Module, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        return head_forward(model, batch_on(batch, device))

    def outputs(model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
        return head_outputs(model, batch_on(batch, device))

    return run, outputs


def frames(batch: Mapping[str, Any]) -> int:
    return int(batch["batch_size"])


def copy_detector(model: nn.Module) -> nn.Module:
    """A deep copy sharing the (large, read-only) dataset OpenPCDet detectors keep a reference to."""
    memo: dict[int, Any] = {}
    dataset = getattr(model, "dataset", None)
    if dataset is not None:
        memo[id(dataset)] = dataset
    return copy.deepcopy(model, memo)


def remaining_batchnorms(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]


__all__ = ["NON_TENSOR_KEYS", "batch_on", "check_supported", "copy_detector", "frames", "head_forward",
           "head_outputs", "load_data_to_device", "make_run", "remaining_batchnorms"]
