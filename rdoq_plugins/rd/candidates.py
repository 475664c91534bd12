"""The candidate quantizers of an RD curve: every bit-width times every clipping ratio.

RDOQ (Wang et al., "RDO-Q: Extremely Fine-Grained Channel-Wise Quantization via Rate-Distortion
Optimization", ECCV 2022) records, per channel group, the distortion of each (bit-width, step
size) pair. Our grid is the core's asymmetric uniform quantizer on the range ``ratio * [lo, hi]``
of each group, so an allocation maps one-to-one onto a :class:`~rdoq_plugins.quant.FakeQuantize`
with per-group bits, scales and zero points. ``bits = 0`` prunes the group (every value becomes 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rdoq_plugins.granularity import PerGroup, channel_view, unit_index
from rdoq_plugins.observers.base import range_to_qparams
from rdoq_plugins.quant.uniform import MAX_BITS, fake_quantize


@dataclass(frozen=True)
class CandidateGrid:
    """The (bits, clipping ratio) candidates of one tensor kind.

    Args:
        bits: bit-widths to try, each in ``0..16`` (RDOQ: 0..10).
        ratios: fractions of each group's range to keep (the step-size candidates), in ``(0, 1]``.
    """

    bits: tuple[int, ...] = tuple(range(11))
    ratios: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)

    def __post_init__(self) -> None:
        if not self.bits or any(not 0 <= b <= MAX_BITS for b in self.bits):
            raise ValueError(f"candidate bits must be in 0..{MAX_BITS}, got {self.bits}")
        if list(self.bits) != sorted(set(self.bits)):
            raise ValueError(f"candidate bits must be increasing and unique, got {self.bits}")
        if not self.ratios or any(not 0.0 < r <= 1.0 for r in self.ratios):
            raise ValueError(f"clipping ratios must be in (0, 1], got {self.ratios}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        """``(bit index, ratio index, bits, ratio)`` for every candidate."""
        for i, b in enumerate(self.bits):
            for j, r in enumerate(self.ratios):
                yield i, j, b, r


def group_ranges(x: Tensor, g: PerGroup) -> tuple[Tensor, Tensor]:
    """``(lo, hi)`` per group of ``x`` along ``g.axis``, widened to include 0."""
    rows = channel_view(x.detach(), g)
    idx = unit_index(g, rows.shape[0]).to(x.device)
    units = g.num_units(rows.shape[0])
    lo = torch.full((units,), float("inf"), device=x.device).scatter_reduce(0, idx, rows.amin(1), "amin")
    hi = torch.full((units,), float("-inf"), device=x.device).scatter_reduce(0, idx, rows.amax(1), "amax")
    return lo.clamp(max=0.0), hi.clamp(min=0.0)


def candidate_qparams(lo: Tensor, hi: Tensor, bits: int | Tensor, ratio: float | Tensor) -> tuple[Tensor, Tensor]:
    """Scale and zero point per group for ``bits`` on the clipped range ``ratio * [lo, hi]``."""
    b = torch.as_tensor(bits, device=lo.device).long().expand_as(lo)
    r = torch.as_tensor(ratio, device=lo.device, dtype=lo.dtype)
    return range_to_qparams(lo * r, hi * r, b, symmetric=False)


def quantize_groups(x: Tensor, g: PerGroup, lo: Tensor, hi: Tensor, bits: int | Tensor,
                    ratio: float | Tensor) -> Tensor:
    """``x`` fake-quantized with ``bits`` per group on ``ratio * [lo, hi]`` (``bits`` and ``ratio``
    may be per-group tensors)."""
    scale, zero_point = candidate_qparams(lo, hi, bits, ratio)
    b = torch.as_tensor(bits, device=x.device).long().expand_as(lo)
    return fake_quantize(x.detach(), scale, zero_point, b, False, g)
