"""QDrop's random dropping of activation quantization (Wei et al., "QDrop: Randomly Dropping
Quantization for Extremely Low-bit Post-Training Quantization", ICLR 2022;
official code: https://github.com/wimh966/QDrop).

While a unit is reconstructed, each element takes its quantized value with probability ``p`` and
its full-precision value otherwise. The official config calls ``p`` ``drop_prob`` although it is
the probability of *keeping* quantization; we keep the key name for compatibility and document it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import torch
from torch import Tensor


class MixRule(str, Enum):
    """How a reconstructed unit's input mixes the quantized and the FP path (``recon.mix``).

    ``element`` (the paper's rule): each element of the unit's input is ``Q(x_q)`` with probability
    ``p`` and ``x_fp`` otherwise, with one mask per element shared by every quantizer that reads
    the input (a ResNet block's conv1 and downsample see the same choice). ``twice``: the input mixes
    ``x_q`` and ``x_fp`` with one mask, then each quantizer that reads it mixes ``Q(.)`` with its
    input again with a mask of its own, so at ``p = 0.5`` an element is ``Q(x_q)``, ``Q(x_fp)``,
    ``x_q`` or ``x_fp`` a quarter of the time each.
    """

    ELEMENT = "element"
    TWICE = "twice"


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


def keep_mask(like: Tensor, keep_prob: float) -> Tensor:
    """A boolean mask, True (keep the quantized value) with probability ``keep_prob``."""
    return torch.rand(like.shape, device=like.device, dtype=torch.float32) < keep_prob


@contextmanager
def shared_mask(quantizers: Iterable[Any], x: Tensor, mask: Tensor) -> Iterator[None]:
    """While active, every quantizer of ``quantizers`` that reads ``x`` mixes with ``mask``."""
    held = list(quantizers)
    for q in held:
        q.shared_mask = (x, mask)
    try:
        yield
    finally:
        for q in held:
            q.shared_mask = None
