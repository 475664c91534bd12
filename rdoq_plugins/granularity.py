"""How a tensor is split into quantization units: one tensor, one channel, or a channel group.

Every quantizer keeps one scale, zero point and bit-width per *unit*. A unit is the whole tensor
(``PerTensor``), one slice along an axis (``PerChannel``) or ``size`` consecutive slices along an
axis (``PerGroup``, the channel groups of RDOQ, Wang et al., "RDO-Q", ECCV 2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class PerTensor:
    """One unit for the whole tensor."""

    def num_units(self, num_channels: int) -> int:
        return 1


@dataclass(frozen=True)
class PerChannel:
    """One unit per slice along ``axis`` (e.g. ``axis=0``: per output channel of a weight)."""

    axis: int = 0

    def num_units(self, num_channels: int) -> int:
        return num_channels


@dataclass(frozen=True)
class PerGroup:
    """One unit per ``size`` consecutive slices along ``axis``; the last group may be smaller."""

    axis: int = 0
    size: int = 128

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"PerGroup.size must be >= 1, got {self.size}")

    def num_units(self, num_channels: int) -> int:
        return -(-num_channels // self.size)


Granularity = Union[PerTensor, PerChannel, PerGroup]

# Encoding stored in a quantizer's buffers so that a state_dict describes its own layout.
_KIND = {PerTensor: 0, PerChannel: 1, PerGroup: 2}


def channel_axis(g: Granularity) -> int | None:
    """The axis the units run along, or None for ``PerTensor``."""
    return None if isinstance(g, PerTensor) else g.axis


def unit_index(g: Granularity, num_channels: int) -> Tensor:
    """For every channel along the axis, the index of its unit (shape ``[num_channels]``)."""
    channels = torch.arange(num_channels)
    if isinstance(g, PerTensor):
        return torch.zeros(num_channels, dtype=torch.long)
    if isinstance(g, PerGroup):
        return channels // g.size
    return channels


def channel_view(x: Tensor, g: Granularity) -> Tensor:
    """``x`` as ``[channels, elements]``: channels along the unit axis, one row for PerTensor."""
    axis = channel_axis(g)
    if axis is None:
        return x.reshape(1, -1)
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def num_channels_of(x: Tensor, g: Granularity) -> int:
    """The number of channels ``x`` has along the granularity's axis (1 for PerTensor)."""
    axis = channel_axis(g)
    return 1 if axis is None else x.shape[axis]


def encode(g: Granularity) -> Tensor:
    """``[kind, axis, size]`` as a long tensor, for a buffer."""
    axis = channel_axis(g)
    size = g.size if isinstance(g, PerGroup) else 0
    return torch.tensor([_KIND[type(g)], 0 if axis is None else axis, size], dtype=torch.long)


def decode(code: Tensor) -> Granularity:
    """Inverse of :func:`encode`."""
    kind, axis, size = (int(v) for v in code.tolist())
    if kind == 0:
        return PerTensor()
    if kind == 1:
        return PerChannel(axis)
    return PerGroup(axis, size)
