"""From RD curves to a mixed-precision model: the allocation table, then per-group quantizers.

The allocator (:mod:`rdoq_plugins.alloc`) picks one (bits, clipping ratio) per group; here each
layer's weight or input quantizer is switched to ``PerGroup`` units with those bits, scales and
zero points (RDOQ, Wang et al., ECCV 2022), ready for evaluation or for QDrop reconstruction on the
mixed grids.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.rd.candidates import candidate_qparams
from rdoq_plugins.rd.curve import LayerCurve, TensorKind


@dataclass(frozen=True)
class CurveTable:
    """All groups of some curves, side by side: ``rate`` and ``distortion`` are ``[groups, bits]``."""

    curves: tuple[LayerCurve, ...]
    rate: np.ndarray
    distortion: np.ndarray
    ratio_index: np.ndarray
    allowed: np.ndarray
    offsets: tuple[int, ...]

    @property
    def elements(self) -> float:
        """Elements the rates count (whole elements per group, as in ``rate``)."""
        return float(sum(float(c.whole_elements().sum()) for c in self.curves))


def curve_table(curves: Sequence[LayerCurve], min_bits: int = 0) -> CurveTable:
    """Stacks the best-ratio curves of ``curves``; curves with fewer bit-widths (e.g. activations
    beside weights) are padded with disallowed choices. Rates are whole elements x bits."""
    if not curves:
        raise ValueError("no RD curves to allocate")
    width = max(len(c.grid.bits) for c in curves)
    rates, dists, idxs, allowed, offsets = [], [], [], [], [0]
    for c in curves:
        rate, dist, idx = c.best()
        ok = torch.tensor(c.grid.bits) >= min_bits
        pad = width - len(c.grid.bits)
        rates.append(torch.cat([rate, rate[:, -1:].expand(-1, pad)], 1).numpy())
        dists.append(torch.cat([dist, dist[:, -1:].expand(-1, pad)], 1).numpy())
        idxs.append(torch.cat([idx, idx[:, -1:].expand(-1, pad)], 1).numpy())
        allowed.append(torch.cat([ok, torch.zeros(pad, dtype=torch.bool)]).expand(c.num_groups, -1).numpy())
        offsets.append(offsets[-1] + c.num_groups)
    mask = np.concatenate(allowed)
    if not mask.any(axis=1).all():
        raise ValueError(f"min_bits={min_bits} leaves no candidate bit-width for some groups")
    return CurveTable(tuple(curves), np.concatenate(rates), np.concatenate(dists).clip(min=0.0),
                      np.concatenate(idxs), mask, tuple(offsets))


def predicted_distortion(table: CurveTable, choice: np.ndarray) -> float:
    """Σ over groups of the chosen candidates' distortions (RDOQ's additivity assumption)."""
    return float(table.distortion[np.arange(len(choice)), choice].sum())


@torch.no_grad()
def apply_choice(layers: Mapping[str, QuantLayer], table: CurveTable, choice: np.ndarray) -> dict[str, float]:
    """Sets every curve's quantizer to the chosen per-group bits and steps; returns each
    (layer, kind)'s average bits, keyed ``"<layer>:<kind>"``."""
    averages: dict[str, float] = {}
    for c, start, end in zip(table.curves, table.offsets[:-1], table.offsets[1:]):
        pick = torch.as_tensor(choice[start:end], dtype=torch.long)
        bits = torch.tensor(c.grid.bits, dtype=torch.long)[pick]
        ratios = torch.tensor(c.grid.ratios, dtype=c.lo.dtype)[torch.as_tensor(table.ratio_index[start:end])[
            torch.arange(end - start), pick]]
        layer = layers[c.layer]
        q = allocated_quantizer(layer, c.kind, c.layer)
        channels = int(layer.weight.shape[0]) if c.kind is TensorKind.WEIGHT else _input_channels(layer)  # type: ignore[union-attr]
        set_group_grid(q, c, channels, bits, ratios)
        averages[f"{c.layer}:{c.kind.value}"] = float((bits.double() * c.elements).sum() / c.elements.sum())
    return averages


def _input_channels(layer: nn.Module) -> int:
    for attr in ("in_channels", "in_features"):
        if hasattr(layer, attr):
            return int(getattr(layer, attr))
    raise ValueError(f"cannot tell the input channels of {type(layer).__name__}")


def allocated_quantizer(layer: QuantLayer, kind: TensorKind, name: str) -> FakeQuantize:
    """The quantizer of ``layer`` that an allocation of ``kind`` sets (its weight or input one)."""
    q = layer.weight_quantizer if kind is TensorKind.WEIGHT else layer.input_quantizer
    if not isinstance(q, FakeQuantize):
        raise ValueError(f"{name} has no single {kind.value} quantizer to apply the allocation to")
    return q


def set_group_grid(q: FakeQuantize, curve: LayerCurve, channels: int, bits: torch.Tensor,
                   ratios: torch.Tensor) -> None:
    """Switches ``q`` to the curve's groups with per-group ``bits`` on ``ratios * [lo, hi]``."""
    if q.symmetric:
        raise ValueError(f"{curve.layer}: RD allocation uses asymmetric grids; set symmetric: false "
                         f"in the {curve.kind.value} quantizer config")
    device = q.bits.device
    q.set_granularity(curve.group, channels, bits.to(device))
    lo, hi = curve.lo.to(device) * ratios.to(device), curve.hi.to(device) * ratios.to(device)
    scale, zero_point = candidate_qparams(curve.lo.to(device), curve.hi.to(device), bits.to(device), ratios.to(device))
    q.scale.data.copy_(scale)
    q.zero_point.data.copy_(zero_point)
    q.observer.lo.copy_(lo)
    q.observer.hi.copy_(hi)
    q.observer.num_batches.fill_(1)
