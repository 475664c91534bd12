"""A small CNN with several outputs and a layer called twice, quantized W4A4, for RD tests; and
synthetic curves for the tests that need no model."""
from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rdoq_plugins import QuantConfig, QuantLayer, calibrate, quantize_model
from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd import CandidateGrid, LayerCurve, TensorKind
from rdoq_plugins.rd.curve import ACT_AXIS, WEIGHT_AXIS


class SharedNet(nn.Module):
    """conv -> conv -> a 1x1 conv applied at two scales (like a shared head) -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.shared = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> list[Tensor]:
        b = F.relu(self.conv2(F.relu(self.conv1(x))))
        c1, c2 = self.shared(b), self.shared(F.avg_pool2d(b, 2))
        return [c1, c2, self.fc(c1.mean((2, 3)))]


def outputs(model: nn.Module, batch: Tensor) -> Sequence[Tensor]:
    return model(batch)


@pytest.fixture()
def quantized() -> tuple[nn.Module, dict[str, QuantLayer], list[Tensor]]:
    torch.manual_seed(0)
    model = SharedNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    qcfg = QuantConfig.from_dict({"w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver",
                                                "bit": 4, "ch_axis": 0},
                                  "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver",
                                                "bit": 4}})
    layers = quantize_model(model, qcfg)
    batches = [torch.randn(3, 3, 8, 8) for _ in range(3)]
    calibrate(model, batches, outputs)
    return model, layers, batches


def synthetic_curve(layer: str, kind: TensorKind, bits: Sequence[int], groups: int,
                    ratios: Sequence[float] = (1.0, 0.5), seed: int = 0) -> LayerCurve:
    """A curve with random ranges and element counts whose distortion falls with the bits."""
    gen = torch.Generator().manual_seed(seed)
    axis = WEIGHT_AXIS if kind is TensorKind.WEIGHT else ACT_AXIS
    steps = torch.tensor([2.0 ** -b for b in bits])
    noise = 1.0 + torch.rand(groups, len(bits), len(ratios), generator=gen)
    return LayerCurve(layer=layer, kind=kind, group=PerGroup(axis, 4), grid=CandidateGrid(tuple(bits), tuple(ratios)),
                      elements=torch.randint(4, 40, (groups,), generator=gen).double(),
                      lo=-torch.rand(groups, generator=gen), hi=torch.rand(groups, generator=gen),
                      distortion=steps[None, :, None] * noise)
