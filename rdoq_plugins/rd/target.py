"""The distortion target: a weighted squared error over the chosen model outputs.

For a list of output tensors ``y_t`` (e.g. a detector's FPN levels and head outputs)

    D(ŷ, y) = Σ_t ||ŷ_t - y_t||² / (numel_t · mean(y_t²))

so every output counts by its relative error, whatever its size or scale. Both RD estimators and
the additivity check use this same quadratic form: the measured one evaluates it, the second-order
one estimates ``Δᵀ E[JᵀJ] Δ`` through random projections ``v`` with ``E[(vᵀJΔ)²] = ||JΔ||²``
(Hutchinson's trick; Wang et al., RDO-Q, ECCV 2022, use one gradient per batch instead).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

EPS = 1e-12


def output_weights(fp: Sequence[Tensor]) -> list[float]:
    """``1 / (numel_t · mean(y_t²))`` for every FP output."""
    if not fp:
        raise ValueError("the distortion target has no outputs")
    return [1.0 / (y.numel() * float(y.detach().double().pow(2).mean()) + EPS) for y in fp]


def output_distortion(fp: Sequence[Tensor], quant: Sequence[Tensor]) -> float:
    """``D(quant, fp)`` as defined above."""
    if len(fp) != len(quant):
        raise ValueError(f"{len(fp)} FP outputs but {len(quant)} quantized outputs")
    total = 0.0
    for w, y, q in zip(output_weights(fp), fp, quant):
        total += w * float((q.detach().double() - y.detach().double()).pow(2).sum())
    return total


def projection_loss(outputs: Sequence[Tensor], generator: torch.Generator) -> Tensor:
    """``Σ_t sqrt(w_t) · vᵀ y_t`` with Rademacher ``v``: its gradient ``g`` gives ``E[(g·Δ)²] ≈ D``."""
    loss = outputs[0].new_zeros(())
    for w, y in zip(output_weights(outputs), outputs):
        v = torch.randint(0, 2, y.shape, generator=generator, dtype=torch.int8).to(y.device, y.dtype) * 2 - 1
        loss = loss + (w**0.5) * (v * y).sum()
    return loss
