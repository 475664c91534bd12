"""Observers record value ranges per quantization unit and turn them into scale / zero point.

An observer returns its input untouched; :meth:`Observer.calculate_qparams` maps the recorded range
``[lo, hi]`` to a step size and zero point (as in ``torch.ao.quantization.observer``). Subclasses
only decide the range of one batch (:meth:`Observer.batch_range`); the base class combines batches
either as an envelope (running min / max) or as an average of per-batch ranges (the ``Avg*``
observers of QDrop, Wei et al., ICLR 2022).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rdoq_plugins.granularity import Granularity, PerTensor, channel_view, encode, unit_index
from rdoq_plugins.quant.state import ResizeOnLoad
from rdoq_plugins.quant.uniform import quant_bounds

EPS = 1e-8


def reduce_to_units(per_channel: Tensor, idx: Tensor, num_units: int, how: str) -> Tensor:
    """Reduces ``[C]`` per-channel values to ``[U]`` units with ``'amin'``, ``'amax'`` or ``'sum'``."""
    out = torch.zeros(num_units, dtype=per_channel.dtype, device=per_channel.device)
    if how == "sum":
        return out.index_add_(0, idx, per_channel)
    return out.scatter_reduce_(0, idx, per_channel, reduce=how, include_self=False)


def range_to_qparams(lo: Tensor, hi: Tensor, bits: Tensor, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point that map ``[lo, hi]`` (per unit) onto the integer grid.

    Asymmetric: the range is first widened to include 0, then ``s = (hi - lo) / (q_max - q_min)``
    and ``z = q_min - round(lo / s)``. Symmetric: ``s = max(|lo|, |hi|) / ((q_max - q_min) / 2)``,
    ``z = 0``. Degenerate ranges (``lo == hi``) and 0-bit units get ``s = 1`` worth of EPS floor.
    """
    q_min, q_max = quant_bounds(bits.to(lo.device), symmetric)
    levels = (q_max - q_min).clamp(min=1.0)
    if symmetric:
        scale = (torch.maximum(lo.abs(), hi.abs()) / (levels / 2)).clamp(min=EPS)
        return scale, torch.zeros_like(scale)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    scale = ((hi - lo) / levels).clamp(min=EPS)
    zero_point = (q_min - torch.round(lo / scale)).clamp(q_min, q_max)
    return scale, zero_point


class Observer(ResizeOnLoad, nn.Module):
    """Base observer: records ``lo`` / ``hi`` per unit over batches.

    Args:
        granularity: the unit layout (``PerTensor``, ``PerChannel``, ``PerGroup``).
        num_channels: channels along the granularity's axis (1 for PerTensor).
        symmetric: whether the quantizer uses a symmetric signed grid.
        averaging: average per-batch ranges instead of taking their envelope.
    """

    averaging: bool = False

    def __init__(
        self,
        granularity: Granularity = PerTensor(),
        num_channels: int = 1,
        symmetric: bool = False,
        averaging: bool | None = None,
    ) -> None:
        super().__init__()
        self.granularity = granularity
        self.symmetric = symmetric
        if averaging is not None:
            self.averaging = averaging
        units = granularity.num_units(num_channels)
        self.register_buffer("unit_of_channel", unit_index(granularity, num_channels))
        self.register_buffer("granularity_code", encode(granularity))
        self.register_buffer("lo", torch.full((units,), float("inf")))
        self.register_buffer("hi", torch.full((units,), float("-inf")))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))

    @property
    def num_units(self) -> int:
        return self.lo.numel()

    def reset(self) -> None:
        """Forgets everything observed."""
        self.lo.fill_(float("inf"))
        self.hi.fill_(float("-inf"))
        self.num_batches.zero_()

    def channels(self, x: Tensor) -> Tensor:
        """``x`` as ``[channels, elements]`` in float32, checked against this observer's layout."""
        xc = channel_view(x.detach(), self.granularity).float()
        if xc.shape[0] != self.unit_of_channel.numel():
            raise ValueError(
                f"{type(self).__name__} was built for {self.unit_of_channel.numel()} channels "
                f"along {self.granularity}, got a tensor of shape {tuple(x.shape)}"
            )
        return xc

    def minmax(self, xc: Tensor) -> tuple[Tensor, Tensor]:
        """Per-unit min and max of ``[channels, elements]`` data."""
        idx = self.unit_of_channel
        lo = reduce_to_units(xc.amin(dim=1), idx, self.num_units, "amin")
        hi = reduce_to_units(xc.amax(dim=1), idx, self.num_units, "amax")
        return lo, hi

    def batch_range(self, xc: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
        """The range ``(lo, hi)`` per unit for one batch; min / max unless overridden."""
        return self.minmax(xc)

    @torch.no_grad()
    def forward(self, x: Tensor, bits: Tensor) -> Tensor:
        """Records the range of ``x`` for quantization at ``bits`` (per unit); returns ``x``."""
        if x.numel() == 0:
            return x
        lo, hi = self.batch_range(self.channels(x), bits.to(x.device))
        n = int(self.num_batches)
        if n == 0:
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        elif self.averaging:
            self.lo.mul_(n / (n + 1)).add_(lo / (n + 1))
            self.hi.mul_(n / (n + 1)).add_(hi / (n + 1))
        else:
            torch.minimum(self.lo, lo, out=self.lo)
            torch.maximum(self.hi, hi, out=self.hi)
        self.num_batches += 1
        return x

    def calculate_qparams(self, bits: Tensor) -> tuple[Tensor, Tensor]:
        """Scale and zero point per unit from the recorded range."""
        if int(self.num_batches) == 0:
            raise RuntimeError(f"{type(self).__name__}.calculate_qparams called before any data")
        return range_to_qparams(self.lo, self.hi, bits, self.symmetric)

    def extra_repr(self) -> str:
        return f"{self.granularity}, symmetric={self.symmetric}, averaging={self.averaging}"
