"""QDrop's random dropping of activation quantization (Wei et al., "QDrop: Randomly Dropping
Quantization for Extremely Low-bit Post-Training Quantization", ICLR 2022;
official code: https://github.com/wimh966/QDrop).

While a unit is reconstructed, each element takes its quantized value with probability ``p`` and
its full-precision value otherwise. The official config calls ``p`` ``drop_prob`` although it is
the probability of *keeping* quantization; we keep the key name for compatibility and document it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def qdrop_mix(x_fp: Tensor, x_q: Tensor, keep_prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Element-wise ``x_q`` with probability ``keep_prob``, else ``x_fp``.

    Args:
        x_fp: full-precision values.
        x_q: quantized values, same shape.
        keep_prob: probability of keeping the quantized value, in ``[0, 1]``.
        generator: optional random generator, for reproducible runs.
    """
    if keep_prob >= 1.0:
        return x_q
    if keep_prob <= 0.0:
        return x_fp
    u = torch.rand(x_q.shape, device=x_q.device, dtype=torch.float32, generator=generator)
    return torch.where(u < keep_prob, x_q, x_fp)
