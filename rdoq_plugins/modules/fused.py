"""A convolution with its ReLU fused in, so a quantizer on the layer's output sees the ReLU output.

QDrop (Wei et al., ICLR 2022) quantizes a conv + ReLU pair once, after the ReLU. An adapter that
places activation quantizers on layer outputs turns such a conv into :class:`ConvReLU2d` with
:func:`fuse_relu` (after BN folding). Only the class changes: parameters, buffers and state-dict
keys stay, and the ReLU the framework applies afterwards changes nothing (ReLU is idempotent).
"""
from __future__ import annotations

from torch import Tensor, nn

from rdoq_plugins.modules.quant_layer import QuantConv2d, QuantLayer


class ConvReLU2d(nn.Conv2d):
    """``nn.Conv2d`` followed by ReLU."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        # clamp_min, not relu: its backward keeps the conv output, not its own, so a framework's
        # in-place ReLU on this output (a ResNet block's) leaves the autograd graph valid.
        return super().forward(x).clamp_min(0)


class QuantConvReLU2d(QuantLayer, ConvReLU2d):
    """Quantized :class:`ConvReLU2d`: its output quantizer sees the ReLU output."""

    def forward_with_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv_forward(x, weight, self.bias).clamp_min(0)


def fuse_relu(conv: nn.Module) -> None:
    """Turns a plain ``nn.Conv2d`` (or its quantized twin) into the ReLU-fused class, in place."""
    if type(conv) in (ConvReLU2d, QuantConvReLU2d):
        return
    if type(conv) is nn.Conv2d:
        conv.__class__ = ConvReLU2d
    elif type(conv) is QuantConv2d:
        conv.__class__ = QuantConvReLU2d
    else:
        raise TypeError(f"only a plain nn.Conv2d takes a fused ReLU, got {type(conv).__name__}")
