"""Uniform affine fake quantization with straight-through gradients.

    q     = clamp(round(x / s) + z, q_min, q_max)
    x_hat = (q - z) * s

with ``[q_min, q_max] = [0, 2^b - 1]`` (asymmetric) or ``[-2^(b-1), 2^(b-1) - 1]`` (symmetric,
``z = 0``). A unit with ``b = 0`` is pruned: its output is exactly zero. The rounding uses the
straight-through estimator (Bengio et al., 2013), so the gradient w.r.t. ``s`` is the LSQ gradient
(Esser et al., "Learned Step Size Quantization", ICLR 2020).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rdoq_plugins.granularity import Granularity, channel_axis, unit_index

MAX_BITS = 16


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, identity in the backward pass."""
    return (x.round() - x).detach() + x


def grad_scale(x: Tensor, scale: float | Tensor) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    scaled = x * scale
    return (x - scaled).detach() + scaled


def per_unit_bits(bits: int | Tensor, num_units: int) -> Tensor:
    """``bits`` as a ``[num_units]`` long tensor, checked to lie in ``0..16``."""
    t = torch.as_tensor(bits).long().flatten()
    if t.numel() == 1:
        t = t.expand(num_units).clone()
    if t.numel() != num_units:
        raise ValueError(f"expected 1 or {num_units} bit-widths, got {t.numel()}")
    if bool(((t < 0) | (t > MAX_BITS)).any()):
        raise ValueError(f"bit-widths must be in 0..{MAX_BITS}, got {sorted(set(t.tolist()))}")
    return t


def quant_bounds(bits: Tensor, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Integer range ``(q_min, q_max)`` per unit, as float tensors; ``(0, 0)`` for 0 bits."""
    b = bits.to(torch.float32)
    if symmetric:
        q_max = torch.where(bits > 0, 2.0 ** (b - 1) - 1, torch.zeros_like(b))
        q_min = torch.where(bits > 0, -(2.0 ** (b - 1)), torch.zeros_like(b))
    else:
        q_max = 2.0**b - 1
        q_min = torch.zeros_like(b)
    return q_min, q_max


def per_channel(values: Tensor, g: Granularity, x: Tensor) -> Tensor:
    """Expands per-unit ``values`` (``[U]``) to a shape that broadcasts against ``x``."""
    axis = channel_axis(g)
    if axis is None:
        return values.reshape(())
    axis = axis % x.dim()
    idx = unit_index(g, x.shape[axis]).to(values.device)
    shape = [1] * x.dim()
    shape[axis] = x.shape[axis]
    return values[idx].reshape(shape)


def fake_quantize(
    x: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    bits: Tensor,
    symmetric: bool,
    g: Granularity,
    rounded: Tensor | None = None,
) -> Tensor:
    """Quantizes and dequantizes ``x`` with per-unit ``scale``, ``zero_point`` and ``bits``.

    Args:
        x: the tensor.
        scale: ``[U]`` step sizes (may require grad, LSQ).
        zero_point: ``[U]`` integer-valued zero points (may require grad through ``round_ste``).
        bits: ``[U]`` integer bit-widths in ``0..16``.
        symmetric: signed range with zero point 0.
        g: how channels map to units.
        rounded: ``x / s`` already rounded on the grid (AdaRound's ``floor(x / s) + h(α)``);
            ``round_ste(x / s)`` when None.

    Returns:
        ``x_hat`` with the shape and dtype of ``x``.
    """
    q_min, q_max = quant_bounds(bits, symmetric)
    s = per_channel(scale, g, x)
    z = per_channel(round_ste(zero_point), g, x)
    lo, hi = per_channel(q_min.to(x.device), g, x), per_channel(q_max.to(x.device), g, x)
    if rounded is None and not torch.is_grad_enabled():
        # Inference: the same arithmetic in place (round_ste(v) == round(v) exactly in float32).
        x_hat = torch.div(x, s).round_().add_(z).clamp_(lo, hi).sub_(z).mul_(s)
    else:
        integer = round_ste(x / s) if rounded is None else rounded
        x_hat = (torch.clamp(integer + z, lo, hi) - z) * s
    if bool((bits == 0).any()):
        x_hat = x_hat * per_channel((bits > 0).to(x.dtype), g, x)
    return x_hat
