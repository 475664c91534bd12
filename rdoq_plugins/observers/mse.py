"""Observers that pick the clipping range minimizing the Lp quantization error.

The candidate ranges shrink the batch's ``[min, max]`` by a ratio ``r`` in ``(0, 1]`` and keep the
one with the smallest ``sum |Q(x) - x|^p`` per unit, ``p = 2.4`` as in QDrop (Wei et al., ICLR 2022)
and BRECQ (Li et al., ICLR 2021). ``MSEObserver`` scans a grid of 100 ratios; ``MSEFastObserver``
runs a bounded golden-section search over ``r`` for all units at once (about 40 evaluations).
The range is the full tensor's, but the error of a candidate is measured on at most ``max_elements``
evenly strided values, which keeps activation calibration fast on large feature maps.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rdoq_plugins.granularity import Granularity, PerChannel, PerTensor
from rdoq_plugins.observers.base import Observer, range_to_qparams, reduce_to_units
from rdoq_plugins.quant.uniform import fake_quantize
from rdoq_plugins.registry import OBSERVERS

_ROWS = PerChannel(0)


def strided_index(length: int, count: int, device: torch.device | str = "cpu") -> Tensor:
    """``count`` evenly spaced indices from 0 to ``length - 1``, both included, in int64.

    Integer arithmetic on purpose: ``torch.linspace`` runs in float32, whose 24-bit mantissa rounds
    the last index of a row longer than 2**24 up to ``length`` (out of range).
    """
    if count <= 1:
        return torch.zeros(min(count, length), dtype=torch.long, device=device)
    steps = torch.arange(count, dtype=torch.long, device=device)
    return steps * (length - 1) // (count - 1)


class _LpSearchObserver(Observer):
    """Shared machinery: the Lp error of a per-unit shrink ratio."""

    def __init__(
        self,
        granularity: Granularity = PerTensor(),
        num_channels: int = 1,
        symmetric: bool = False,
        averaging: bool | None = None,
        p: float = 2.4,
        max_elements: int = 1 << 16,
    ) -> None:
        super().__init__(granularity, num_channels, symmetric, averaging)
        self.p = p
        self.max_elements = max_elements

    def subsample(self, xc: Tensor) -> Tensor:
        """About ``max_elements`` values (at least 1024 per channel), as strided columns of ``[C, M]``."""
        cols = max(1024, self.max_elements // xc.shape[0])
        if xc.shape[1] <= cols:
            return xc
        return xc[:, strided_index(xc.shape[1], cols, xc.device)]

    def lp_error(self, xc: Tensor, lo: Tensor, hi: Tensor, ratio: Tensor, bits: Tensor) -> Tensor:
        """``sum |Q(x) - x|^p`` per unit for the range ``[lo * ratio, hi * ratio]``."""
        scale, zero_point = range_to_qparams(lo * ratio, hi * ratio, bits, self.symmetric)
        idx = self.unit_of_channel
        x_hat = fake_quantize(xc, scale[idx], zero_point[idx], bits[idx], self.symmetric, _ROWS)
        err = (x_hat - xc).abs().pow(self.p).sum(dim=1)
        return reduce_to_units(err, idx, self.num_units, "sum")

    def batch_range(self, xc: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self.minmax(xc)  # the full range; the error is measured on a subsample
        ratio = self.search(self.subsample(xc), lo, hi, bits.expand(self.num_units))
        return lo * ratio, hi * ratio

    def search(self, xc: Tensor, lo: Tensor, hi: Tensor, bits: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


@OBSERVERS.register("MSEObserver")
class MSEObserver(_LpSearchObserver):
    """Grid search over 100 shrink ratios ``r = k / 100``; envelope over batches."""

    steps: int = 100

    def search(self, xc: Tensor, lo: Tensor, hi: Tensor, bits: Tensor) -> Tensor:
        best_err = torch.full_like(lo, float("inf"))
        best = torch.ones_like(lo)
        for k in range(self.steps, 0, -1):
            r = torch.full_like(lo, k / self.steps)
            err = self.lp_error(xc, lo, hi, r, bits)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, r, best)
        return best


@OBSERVERS.register("MSEFastObserver")
class MSEFastObserver(_LpSearchObserver):
    """Bounded golden-section search for the shrink ratio in ``[0.01, 1]``; envelope over batches.

    Each iteration evaluates one new ratio per unit (the other is reused), so 14 iterations cost
    16 passes over the data and narrow the interval to 0.1% of its width.
    """

    iterations: int = 14

    def search(self, xc: Tensor, lo: Tensor, hi: Tensor, bits: Tensor) -> Tensor:
        inv_phi = (math.sqrt(5) - 1) / 2
        a, b = torch.full_like(lo, 0.01), torch.ones_like(lo)
        c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
        fc, fd = self.lp_error(xc, lo, hi, c, bits), self.lp_error(xc, lo, hi, d, bits)
        for _ in range(self.iterations):
            left = fc <= fd  # the minimum lies in [a, d]: d <- c, evaluate a new c
            b, a = torch.where(left, d, b), torch.where(left, a, c)
            new = torch.where(left, b - inv_phi * (b - a), a + inv_phi * (b - a))
            f_new = self.lp_error(xc, lo, hi, new, bits)
            c, d, fc, fd = (torch.where(left, new, d), torch.where(left, c, new),
                            torch.where(left, f_new, fd), torch.where(left, fc, f_new))
        best, f_best = torch.where(fc <= fd, c, d), torch.minimum(fc, fd)
        one = torch.ones_like(lo)  # the error need not be unimodal: never do worse than min / max
        return torch.where(self.lp_error(xc, lo, hi, one, bits) < f_best, one, best)


@OBSERVERS.register("AvgMSEObserver")
class AvgMSEObserver(MSEObserver):
    """:class:`MSEObserver` averaging the per-batch ranges."""

    averaging = True


@OBSERVERS.register("AvgMSEFastObserver")
class AvgMSEFastObserver(MSEFastObserver):
    """:class:`MSEFastObserver` averaging the per-batch ranges."""

    averaging = True
