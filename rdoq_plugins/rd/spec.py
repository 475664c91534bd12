"""What an RD curve run computes: groups, candidates, tensor kinds and the estimator's knobs."""
from __future__ import annotations

from dataclasses import dataclass, field

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd.candidates import CandidateGrid
from rdoq_plugins.rd.curve import ACT_AXIS, WEIGHT_AXIS, TensorKind


@dataclass(frozen=True)
class CurveSpec:
    """Settings of one curve computation (RDOQ, Wang et al., ECCV 2022).

    Args:
        kinds: which tensors get curves (weights, layer inputs, or both).
        weight_group: output channels per weight group (RDOQ's ``nchannelbatch``).
        act_group: input channels per activation group.
        weight_grid / act_grid: the (bits, clipping ratio) candidates.
        projections: random projections per batch (second-order estimator).
        kappa: RDOQ's isotropic term ``½κ||Δ||²`` added to weight distortions.
        seed: seeds the projections.
    """

    kinds: tuple[TensorKind, ...] = (TensorKind.WEIGHT,)
    weight_group: int = 8
    act_group: int = 8
    weight_grid: CandidateGrid = field(default_factory=CandidateGrid)
    act_grid: CandidateGrid = field(default_factory=lambda: CandidateGrid(tuple(range(9)), (1.0, 0.8, 0.6, 0.4)))
    projections: int = 4
    kappa: float = 1e-7
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ValueError("CurveSpec.kinds is empty")
        if self.weight_group < 1 or self.act_group < 1 or self.projections < 1:
            raise ValueError("group sizes and projections must be >= 1")

    def group(self, kind: TensorKind) -> PerGroup:
        if kind is TensorKind.WEIGHT:
            return PerGroup(WEIGHT_AXIS, self.weight_group)
        return PerGroup(ACT_AXIS, self.act_group)

    def grid(self, kind: TensorKind) -> CandidateGrid:
        return self.weight_grid if kind is TensorKind.WEIGHT else self.act_grid
