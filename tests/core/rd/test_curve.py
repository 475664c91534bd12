"""One layer's curve: best ratio per bit-width, rates in whole elements, and a plain-tensor state."""
from __future__ import annotations

import io

import torch

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd import LayerCurve, TensorKind
from tests.core.rd.conftest import synthetic_curve  # type: ignore[import-not-found]


def test_best_takes_the_least_distortion_over_ratios() -> None:
    curve = synthetic_curve("conv", TensorKind.WEIGHT, (0, 2, 4), groups=3, ratios=(1.0, 0.8, 0.6))
    curve.distortion[1, 2] = torch.tensor([3.0, 0.5, 2.0])
    rate, dist, idx = curve.best()
    assert rate.shape == dist.shape == idx.shape == (3, 3) and rate.dtype == dist.dtype == torch.float64
    assert torch.equal(dist, curve.distortion.min(dim=2).values.double())
    assert float(dist[1, 2]) == 0.5 and int(idx[1, 2]) == 1
    assert torch.equal(curve.distortion.gather(2, idx[..., None])[..., 0].double(), dist)
    assert torch.equal(rate, curve.whole_elements()[:, None] * torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64))


def test_rates_count_whole_elements_and_at_least_one() -> None:
    curve = synthetic_curve("x", TensorKind.ACT, (2, 4), groups=4)
    curve.elements = torch.tensor([2.4, 2.6, 0.2, 7.0], dtype=torch.float64)
    assert curve.whole_elements().tolist() == [2.0, 3.0, 1.0, 7.0]
    assert curve.best()[0][:, 1].tolist() == [8.0, 12.0, 4.0, 28.0]
    assert curve.num_groups == 4


def test_state_is_plain_and_loads_with_weights_only() -> None:
    curve = synthetic_curve("head.cls", TensorKind.ACT, (2, 4, 8), groups=5, ratios=(1.0, 0.7))
    state = curve.state()
    assert all(isinstance(v, (str, int, list, torch.Tensor)) for v in state.values())
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    back = LayerCurve.from_state(torch.load(buf, weights_only=True))
    assert (back.layer, back.kind, back.group, back.grid) == ("head.cls", TensorKind.ACT, PerGroup(1, 4), curve.grid)
    for name in ("elements", "lo", "hi", "distortion"):
        assert torch.equal(getattr(back, name), getattr(curve, name)), name
