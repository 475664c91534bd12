"""FP weights of OpenPCDet detectors, loaded strictly, with sparse-conv weights of another spconv
layout permuted (reading checkpoints: :mod:`rdoq_plugins.workflow.checkpoint`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spconv.pytorch.conv import SparseConvolution
from torch import Tensor, nn

from rdoq_plugins.files import load_strict


def adapt_spconv_layout(model: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with sparse-conv weights of another spconv layout permuted to this model's layout,
    as OpenPCDet does on loading (spconv 1.x stores ``[*kernel, in, out]``; 2.x ``[out, *kernel, in]``,
    older 2.x ``[*kernel, out, in]``). A weight that matches no layout is left for the strict check
    to report."""
    out = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, SparseConvolution):
            continue
        key = f"{name}.weight" if name else "weight"
        value = out.get(key)
        target = module.weight.shape
        if not isinstance(value, Tensor) or value.shape == target or value.dim() != len(target):
            continue
        for candidate in (value.transpose(-1, -2), value.movedim(-1, 0)):
            if candidate.shape == target:
                out[key] = candidate.contiguous()
                break
    return out


def load_fp_weights(model: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Loads FP weights strictly: every key of the model present with its shape, no other key."""
    load_strict(model, adapt_spconv_layout(model, state), what)


__all__ = ["adapt_spconv_layout", "load_fp_weights"]
