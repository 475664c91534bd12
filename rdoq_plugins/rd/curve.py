"""The rate-distortion curve of one quantized tensor: distortion per (group, bits, clipping ratio).

RDOQ (Wang et al., RDO-Q, ECCV 2022) allocates bits from such curves: the rate of a choice is
``bits x elements`` of its group, the distortion is the output error it causes alone. A curve is
stored as plain tensors (:meth:`LayerCurve.state`), so it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd.candidates import CandidateGrid


class TensorKind(str, Enum):
    """Which tensor of a layer a curve describes."""

    WEIGHT = "weight"
    ACT = "act"


WEIGHT_AXIS = 0  # output channels of a weight (dense or sparse conv, linear)
ACT_AXIS = 1  # channels of a layer input ([N, C, ...] dense, [N, C] sparse features)


@dataclass
class LayerCurve:
    """Distortion of every candidate for every channel group of one layer's weight or input.

    Attributes:
        layer: the module name.
        kind: weight or activation (the layer input).
        group: the channel groups (``PerGroup(axis, size)``).
        grid: the candidates.
        elements: elements per group (for activations: per calibration image, averaged).
        lo, hi: the range of every group (clipped by each candidate's ratio).
        distortion: ``[groups, len(grid.bits), len(grid.ratios)]`` output distortion.
    """

    layer: str
    kind: TensorKind
    group: PerGroup
    grid: CandidateGrid
    elements: Tensor
    lo: Tensor
    hi: Tensor
    distortion: Tensor

    @property
    def num_groups(self) -> int:
        return int(self.elements.numel())

    def whole_elements(self) -> Tensor:
        """Elements per group as whole numbers (at least 1): what rates count (``bits x elements``)."""
        return self.elements.double().round().clamp(min=1.0)

    def best(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(rate, distortion, ratio index)``, each ``[groups, bits]``: the best ratio per bit-width;
        rates count whole elements."""
        dist, idx = self.distortion.min(dim=2)
        rate = self.whole_elements()[:, None] * torch.tensor(self.grid.bits, dtype=torch.float64)
        return rate, dist.double(), idx

    def state(self) -> dict[str, object]:
        """Tensors and plain values only (``weights_only`` loadable)."""
        return {"layer": self.layer, "kind": self.kind.value, "axis": self.group.axis, "size": self.group.size,
                "bits": list(self.grid.bits), "ratios": list(self.grid.ratios), "elements": self.elements,
                "lo": self.lo, "hi": self.hi, "distortion": self.distortion}

    @classmethod
    def from_state(cls, s: dict[str, object]) -> LayerCurve:
        return cls(layer=str(s["layer"]), kind=TensorKind(s["kind"]), group=PerGroup(int(s["axis"]), int(s["size"])),
                   grid=CandidateGrid(tuple(s["bits"]), tuple(s["ratios"])),  # type: ignore[arg-type]
                   elements=s["elements"], lo=s["lo"], hi=s["hi"], distortion=s["distortion"])  # type: ignore[arg-type]
