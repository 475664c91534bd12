"""The integers a fake-quantized layer computes with, exactly as its quantizer forms them.

For a weight ``w`` with per-unit step ``s``, zero point ``z`` and bits ``b`` (:mod:`rdoq_plugins.
quant.uniform`)::

    q     = clamp(r + round(z), q_min(b), q_max(b)),   r = round(w / s)  or AdaRound's floor(w / s) + h
    w_hat = (q - round(z)) * s

``r`` follows the quantizer: nearest rounding, or AdaRound's hardened ``h = [α >= 0]`` (Nagel et al.,
ICML 2020); ``s`` is the value LSQ's forward pass uses (Esser et al., ICLR 2020: its gradient
scaling can move the forward value by an ulp). A unit with 0 bits is pruned: ``q = 0`` and
``w_hat = 0``. :func:`dequantize` of :func:`weight_integers` equals ``layer.quantized_weight()``
bit for bit (checked by the tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rdoq_plugins.granularity import Granularity
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundingState
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.lsq import LSQFakeQuantize
from rdoq_plugins.quant.uniform import grad_scale, per_channel, quant_bounds


class NotDeployableError(ValueError):
    """A quantizer whose integers are not defined yet (soft AdaRound rounding, fake quant off)."""


@dataclass
class QuantParams:
    """One quantizer's per-unit parameters as its forward pass uses them (``[U]`` each)."""

    scale: Tensor  # float32 steps
    zero_point: Tensor  # float32, integer-valued (rounded)
    bits: Tensor  # long
    symmetric: bool
    granularity: Granularity

    def bounds(self) -> tuple[Tensor, Tensor]:
        """``(q_min, q_max)`` per unit as long tensors (``(0, 0)`` for 0 bits)."""
        lo, hi = quant_bounds(self.bits, self.symmetric)
        return lo.long(), hi.long()


@dataclass
class LayerIntegers:
    """A quantized weight as integers: ``q`` (long, the weight's shape) and its parameters."""

    q: Tensor
    params: QuantParams


@torch.no_grad()
def quant_params(quantizer: FakeQuantize, x: Tensor | None = None) -> QuantParams:
    """The effective step and zero point of ``quantizer`` (``x``: the tensor it quantizes, which sets
    LSQ's gradient scale; its forward value is ``s`` up to float rounding)."""
    scale, zero_point = quantizer.scale.detach(), quantizer.zero_point.detach()
    if isinstance(quantizer, LSQFakeQuantize):
        if x is None:
            raise ValueError("an LSQ quantizer's forward step depends on the tensor it quantizes: pass x")
        g = quantizer.gradient_scale(x)
        scale = grad_scale(scale, g)
        if quantizer.learn_zero_point:
            zero_point = grad_scale(zero_point, g)
    return QuantParams(scale.float().clone(), zero_point.round().float(), quantizer.bits.detach().clone(),
                       bool(quantizer.symmetric), quantizer.granularity)


@torch.no_grad()
def weight_integers(quantizer: FakeQuantize, weight: Tensor) -> LayerIntegers:
    """The integers ``quantizer`` rounds ``weight`` to (its forward pass, without the float step)."""
    if not bool(quantizer.fake_quant_enabled):
        raise NotDeployableError("the weight quantizer has fake quantization switched off")
    p = quant_params(quantizer, weight)
    w = weight.detach()
    s = per_channel(p.scale, p.granularity, w)
    if isinstance(quantizer, AdaRoundFakeQuantize) and quantizer.state is not RoundingState.NEAREST:
        if quantizer.state is RoundingState.SOFT:
            raise NotDeployableError("AdaRound rounding is still soft: harden() it first")
        rounded = torch.floor(w / s) + (quantizer.alpha.detach() >= 0).to(w.dtype)
    else:
        rounded = torch.div(w, s).round()
    lo, hi = (per_channel(t.float(), p.granularity, w) for t in p.bounds())
    z = per_channel(p.zero_point, p.granularity, w)
    q = torch.clamp(rounded + z, lo, hi)
    q = q * per_channel((p.bits > 0).to(w.dtype), p.granularity, w)
    return LayerIntegers(q.long(), p)


def dequantize(ints: LayerIntegers, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(q - z) * s`` per unit, 0 for pruned units: the fake-quantized weight."""
    p = ints.params
    q = ints.q.to(dtype)
    w = (q - per_channel(p.zero_point.to(dtype), p.granularity, q)) * per_channel(p.scale.to(dtype),
                                                                                 p.granularity, q)
    if bool((p.bits == 0).any()):
        w = w * per_channel((p.bits > 0).to(dtype), p.granularity, q)
    return w
