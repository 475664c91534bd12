"""What reconstruction reads: per-sample inputs and targets of one unit.

QDrop caches, for every calibration sample, the unit's input in the quantized model, its input in
the FP model and its FP output. Adapters may keep these on GPU, in CPU memory or on disk; the
reconstruction loop only needs :class:`UnitCache`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class UnitCache(Protocol):
    """Random access to ``(quant_in, fp_in, fp_out)`` for a set of sample indices."""

    def __len__(self) -> int: ...

    def get(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


@dataclass
class TensorCache:
    """A :class:`UnitCache` over three tensors whose first dimension is the sample."""

    quant_in: Tensor
    fp_in: Tensor
    fp_out: Tensor

    def __post_init__(self) -> None:
        n = {len(self.quant_in), len(self.fp_in), len(self.fp_out)}
        if len(n) != 1:
            raise ValueError(f"cached tensors disagree on the number of samples: {sorted(n)}")

    def __len__(self) -> int:
        return len(self.quant_in)

    def get(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        idx = indices.to(self.quant_in.device)
        return self.quant_in[idx], self.fp_in[idx], self.fp_out[idx]
