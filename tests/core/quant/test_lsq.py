"""LSQ: learned step size with its gradient scale, checked against finite differences."""
from __future__ import annotations

import math

import pytest
import torch

from rdoq_plugins.granularity import PerTensor
from rdoq_plugins.quant import LSQFakeQuantize, LSQPlusFakeQuantize


def _lsq(bit: int = 4, **kw: object) -> LSQFakeQuantize:
    q = LSQFakeQuantize(bit=bit, granularity=PerTensor(), **kw)  # type: ignore[arg-type]
    q.enable_fake_quant(True)
    return q


def test_scale_is_a_parameter_initialised_by_the_observer() -> None:
    q = _lsq()
    x = torch.linspace(-1, 3, 1000)
    q.enable_observer(True)
    q(x)
    assert isinstance(q.scale, torch.nn.Parameter)
    assert q.scale.item() == pytest.approx(4 / 15, rel=1e-5)


def test_gradient_scale_is_one_over_sqrt_n_qmax() -> None:
    q = _lsq(bit=4, symmetric=True)
    q.scale.data.fill_(0.1)
    x = torch.tensor([0.234, -0.51, 5.0, -5.0, 0.07, 0.33])
    q(x).sum().backward()
    raw = [(v / 0.1).round() - v / 0.1 for v in x[[0, 1, 4, 5]]] + [torch.tensor(7.0), torch.tensor(-8.0)]
    g = 1 / math.sqrt(x.numel() * 7)
    assert q.scale.grad.item() == pytest.approx(float(sum(raw)) * g, rel=1e-4)


def test_gradients_match_finite_differences_of_the_straight_through_surrogate() -> None:
    # The STE treats the rounding residual r = round(x/s) - x/s as a constant. The quantizer's
    # gradients must equal central differences of that surrogate, s * clamp(x/s + r, q_min, q_max),
    # times LSQ's gradient scale for s.
    q = _lsq(bit=3)
    s0 = 0.3
    q.scale.data.fill_(s0)
    x = torch.tensor([0.41, 0.95, 1.52, 3.0, 0.37]).requires_grad_(True)  # no value rounds onto an edge
    w = torch.tensor([0.3, -1.2, 0.7, 2.0, 1.1])
    (q(x) * w).sum().backward()
    r = ((x / s0).round() - x / s0).detach().double()

    def surrogate(xv: torch.Tensor, s: float) -> float:
        return float((s * torch.clamp(xv / s + r, 0, 7) * w.double()).sum())

    xd, eps = x.detach().double(), 1e-6
    g = 1 / math.sqrt(x.numel() * 7)
    fd_s = (surrogate(xd, s0 + eps) - surrogate(xd, s0 - eps)) / (2 * eps)
    assert q.scale.grad.item() / g == pytest.approx(fd_s, rel=1e-4)
    for i in range(x.numel()):
        step = torch.zeros_like(xd)
        step[i] = eps
        fd_x = (surrogate(xd + step, s0) - surrogate(xd - step, s0)) / (2 * eps)
        assert x.grad[i].item() == pytest.approx(fd_x, abs=1e-4)


def test_lsq_plus_learns_the_zero_point() -> None:
    q = LSQPlusFakeQuantize(bit=4, granularity=PerTensor())
    q.enable_fake_quant(True)
    q.scale.data.fill_(0.1)
    q.zero_point.data.fill_(3.0)
    x = torch.tensor([-0.9, -0.4, 0.2, 0.8, 1.3])
    q(x).sum().backward()
    assert isinstance(q.zero_point, torch.nn.Parameter)
    assert q.zero_point.grad is not None and q.zero_point.grad.abs().item() > 0
