"""Learned step size quantization (Esser et al., "Learned Step Size Quantization", ICLR 2020) and
LSQ+ with a learned zero point (Bhalgat et al., "LSQ+", CVPR Workshops 2020).

The step size ``s`` is a parameter, initialised by the observer. Its gradient is the straight-through
gradient of the quantizer scaled by ``g = 1 / sqrt(N * q_max)``, where ``N`` is the number of
elements one step size acts on (the tensor's elements per unit).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.uniform import fake_quantize, grad_scale, quant_bounds
from rdoq_plugins.registry import QUANTIZERS


@QUANTIZERS.register("LSQFakeQuantize")
class LSQFakeQuantize(FakeQuantize):
    """Fake quantizer whose step size is learned with LSQ's gradient scaling."""

    learn_scale = True

    def gradient_scale(self, x: Tensor) -> Tensor:
        """``1 / sqrt(N * q_max)`` per unit."""
        _, q_max = quant_bounds(self.bits, self.symmetric)
        per_unit = x.numel() / self.bits.numel()
        return torch.rsqrt(per_unit * q_max.clamp(min=1.0)).to(x.device)

    def quantize(self, x: Tensor) -> Tensor:
        g = self.gradient_scale(x)
        scale = grad_scale(self.scale, g)
        zero_point = grad_scale(self.zero_point, g) if self.learn_zero_point else self.zero_point
        return fake_quantize(x, scale, zero_point, self.bits, self.symmetric, self.granularity)


@QUANTIZERS.register("LSQPlusFakeQuantize")
class LSQPlusFakeQuantize(LSQFakeQuantize):
    """LSQ+: step size and zero point both learned (the zero point is rounded straight-through)."""

    learn_zero_point = True
