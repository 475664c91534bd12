"""The official QDrop weight search: a 2-D grid of range widths and zero points per unit.

QDrop's ``MSEObserver`` (Wei et al., ICLR 2022; also BRECQ, Li et al., ICLR 2021) scores a
candidate range by ``sum |Q(x) - x|^p`` (``p = 2.4``) over every element. For a unit whose values
have both signs it tries 100 widths ``w = k / 100 * (max - min)`` and, for each, every zero point
``z`` of the grid (16 at 4 bits), i.e. the range ``[-z * s, w - z * s]`` with ``s = w / levels``: the
clipping may be asymmetric around the data. A unit of one sign gets the 1-D search over shrink
ratios of ``[min, max]``. :class:`GridMSEObserver` does the same on every element of the tensor
(no subsample), which costs ``100 * (levels + 1)`` quantization passes per batch: meant for weights.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rdoq_plugins.observers.mse import MSEObserver
from rdoq_plugins.quant.uniform import quant_bounds
from rdoq_plugins.registry import OBSERVERS


@OBSERVERS.register("GridMSEObserver")
class GridMSEObserver(MSEObserver):
    """100 widths x every zero point per unit (signed data), the 1-D ratio search otherwise; the
    error on every element; envelope over batches."""

    widths: int = 100

    def subsample(self, xc: Tensor) -> Tensor:
        return xc  # the official search measures the error on every element

    def batch_range(self, xc: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
        bits = bits.expand(self.num_units)
        lo, hi = super().batch_range(xc, bits)  # the 1-D search, kept for one-sided units
        if self.symmetric:
            return lo, hi
        lo0, hi0 = self.minmax(xc)
        signed = (lo0 < 0) & (hi0 > 0)
        if not bool(signed.any()):
            return lo, hi
        one = torch.ones_like(lo)
        best = self.lp_error(xc, lo, hi, one, bits)
        q_min, q_max = quant_bounds(bits.to(lo.device), False)
        levels = (q_max - q_min).clamp(min=1.0)
        top = int(levels.max())
        for k in range(1, self.widths + 1):
            width = (hi0 - lo0) * (k / self.widths)
            step = width / levels
            for z in range(top + 1):
                zp = torch.clamp(torch.full_like(levels, float(z)), max=levels)
                c_lo, c_hi = -zp * step, width - zp * step
                err = self.lp_error(xc, c_lo, c_hi, one, bits)
                better = signed & (err < best)
                best = torch.where(better, err, best)
                lo, hi = torch.where(better, c_lo, lo), torch.where(better, c_hi, hi)
        return lo, hi

