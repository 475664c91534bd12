"""Quantized layers: a weighted layer with a weight quantizer and optional activation quantizers.

A wrapper *becomes* the layer it wraps: :meth:`QuantLayer.from_float` shares the original's
parameters, buffers and attributes, so ``isinstance(q, nn.Conv2d)`` still holds, state-dict keys of
the FP weights are unchanged, and framework code that reads ``out_channels`` keeps working. Each
wrapper class only says how to run the layer with a given weight (``forward_with_weight``);
an adapter adds its own layer types (e.g. sparse convolutions) this way through
:func:`rdoq_plugins.modules.register_quant_layer`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from typing_extensions import Self

from rdoq_plugins.quant.fake_quantize import FakeQuantize

if TYPE_CHECKING:
    from rdoq_plugins.modules.level_quantizer import LevelQuantizer

L = TypeVar("L", bound="QuantLayer")


class QuantLayer(nn.Module):
    """Mixin for quantized weighted layers (listed first in the bases, before the FP class).

    Attributes:
        weight_quantizer: quantizes ``self.weight``, or None to keep the weight FP.
        input_quantizer: quantizes the layer input, or None (a :class:`~rdoq_plugins.modules.
            level_quantizer.LevelQuantizer` in a layer shared across pyramid levels).
        output_quantizer: quantizes the layer output, or None.
        weight_out_axis: the output-channel axis of ``self.weight`` (0 for dense and sparse convolutions
            and linear layers).
    """

    weight_out_axis: int = 0
    weight_quantizer: FakeQuantize | None
    input_quantizer: FakeQuantize | LevelQuantizer | None
    output_quantizer: FakeQuantize | None

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        weight_quantizer: FakeQuantize | None = None,
        input_quantizer: FakeQuantize | None = None,
        output_quantizer: FakeQuantize | None = None,
    ) -> Self:
        """A quantized twin of ``module`` that shares its parameters and buffers."""
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        for attr in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            new.__dict__[attr] = type(module.__dict__[attr])(module.__dict__[attr])
        new.weight_quantizer = weight_quantizer
        new.input_quantizer = input_quantizer
        new.output_quantizer = output_quantizer
        return new

    @classmethod
    def output_channel_weight(cls, layer: nn.Module) -> Tensor:
        """``layer.weight`` as a view (same storage) whose axis 0 runs over the output channels.

        BN folding scales this view in place. The default is the weight itself; a layer type whose
        weight does not hold its output channels on axis 0 for every instance overrides it (e.g.
        a sparse convolution library's 1x1 convolutions that read their weight as ``[in, out]``).
        """
        return layer.weight  # type: ignore[return-value]

    def quantized_weight(self) -> Tensor:
        """The weight as the layer uses it: fake-quantized when a weight quantizer is set.

        Without autograd the result is cached until the weight or any quantizer tensor changes
        (tracked by their version counters), so inference quantizes each weight once.
        """
        weight: Tensor = self.weight  # type: ignore[assignment]
        q = self.weight_quantizer
        if q is None:
            return weight
        if torch.is_grad_enabled() or bool(q.observer_enabled):
            return q(weight)
        key = tuple((id(t), t._version) for t in (weight, *q.parameters(), *q.buffers()))
        cached = self.__dict__.get("_weight_cache")
        if cached is None or cached[0] != key:
            cached = (key, q(weight))
            self.__dict__["_weight_cache"] = cached
        return cached[1]

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        """Runs the FP layer's computation with ``weight`` in place of ``self.weight``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        y = self.forward_with_weight(x, self.quantized_weight())
        if self.output_quantizer is not None:
            y = self.output_quantizer(y)
        return y


class QuantConv1d(QuantLayer, nn.Conv1d):
    """Quantized ``nn.Conv1d``."""

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv_forward(x, weight, self.bias)


class QuantConv2d(QuantLayer, nn.Conv2d):
    """Quantized ``nn.Conv2d``."""

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv_forward(x, weight, self.bias)


class QuantConv3d(QuantLayer, nn.Conv3d):
    """Quantized ``nn.Conv3d``."""

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv_forward(x, weight, self.bias)


class QuantLinear(QuantLayer, nn.Linear):
    """Quantized ``nn.Linear``."""

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)


class QuantAct(nn.Module):
    """An activation (or identity) followed by an activation quantizer, e.g. ReLU -> A4."""

    def __init__(self, quantizer: FakeQuantize, act: nn.Module | None = None) -> None:
        super().__init__()
        self.act = act if act is not None else nn.Identity()
        self.quantizer = quantizer

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(self.act(x))
