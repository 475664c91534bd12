"""Per-group ranges and sizes of layer inputs over the calibration set (for activation curves)."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.candidates import group_ranges
from rdoq_plugins.rd.curve import TensorKind
from rdoq_plugins.rd.probe import InputProbe, fp_pass, group_sums
from rdoq_plugins.rd.spec import CurveSpec


@torch.no_grad()
def act_ranges(
    model: nn.Module,
    layers: Mapping[str, QuantLayer],
    batches: Sequence[Any],
    outputs: Callable[[nn.Module, Any], Sequence[Tensor]],
    spec: CurveSpec,
    images: Callable[[Any], int],
    reduce_mean: Callable[[Tensor], Tensor] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """``(lo, hi, elements)`` per input group of every layer: ranges averaged over batches (the
    envelope over a shared layer's calls within a batch), elements per image averaged over batches
    (and over ranks with ``reduce_mean``, so every rank prices the same candidates)."""
    g = spec.group(TensorKind.ACT)
    lo: dict[str, Tensor] = {}
    hi: dict[str, Tensor] = {}
    elems: dict[str, Tensor] = {}
    with fp_pass(model), InputProbe(layers, track_grad=False) as probe:
        for batch in batches:
            probe.clear()
            outputs(model, batch)
            for name, xs in probe.calls.items():
                if not xs:
                    raise RuntimeError(f"{name} was not called by the distortion target's forward pass")
                ranges = [group_ranges(x, g) for x in xs]
                b_lo = torch.stack([r[0] for r in ranges]).amin(0)
                b_hi = torch.stack([r[1] for r in ranges]).amax(0)
                n = sum(group_sums(torch.ones_like(x[:1]), g, 0) * x.shape[0] for x in xs) / images(batch)
                lo[name] = lo.get(name, 0) + b_lo / len(batches)
                hi[name] = hi.get(name, 0) + b_hi / len(batches)
                elems[name] = elems.get(name, 0) + n.double() / len(batches)
    if reduce_mean is not None:
        for d in (lo, hi, elems):
            for name in d:
                d[name] = reduce_mean(d[name])
    return lo, hi, elems
