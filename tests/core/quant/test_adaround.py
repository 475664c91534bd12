"""AdaRound starts at the fractional part, learns, and ends on the grid."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerChannel
from rdoq_plugins.quant import AdaRoundFakeQuantize, RoundingState
from rdoq_plugins.quant.adaround import rectified_sigmoid


def _calibrated(w: torch.Tensor, bit: int = 4) -> AdaRoundFakeQuantize:
    q = AdaRoundFakeQuantize(observer="MinMaxObserver", bit=bit, granularity=PerChannel(0),
                             num_channels=w.shape[0], is_weight=True)
    q.observe(w)
    q.enable_fake_quant(True)
    return q


def test_soft_start_reproduces_the_fp_weight_inside_the_range() -> None:
    w = torch.randn(8, 16)
    q = _calibrated(w)
    q.init_rounding(w)
    s = q.scale[:, None]
    frac = w / s - torch.floor(w / s)
    assert torch.allclose(q.soft_rounding(), frac.clamp(0.0, 1.0), atol=1e-4)
    fl = torch.floor(w / s) + q.zero_point[:, None]
    inside = (fl >= 0) & (fl + 1 <= 15)
    assert inside.float().mean() > 0.9
    assert torch.allclose(q(w)[inside], w[inside], atol=1e-4 * float(q.scale.max()))


def test_hard_rounding_is_on_the_grid_and_rounds_up_where_alpha_is_positive() -> None:
    w = torch.randn(8, 16)
    q = _calibrated(w)
    q.init_rounding(w)
    with torch.no_grad():
        q.alpha.add_(torch.randn_like(q.alpha))
    q.harden()
    assert q.state is RoundingState.HARD
    w_hat = q(w)
    s, z = q.scale[:, None], q.zero_point[:, None]
    grid = w_hat / s + z
    assert torch.allclose(grid, grid.round(), atol=1e-4)
    expected = torch.clamp(torch.floor(w / s) + (q.alpha >= 0).float() + z, 0, 15)
    assert torch.allclose(grid, expected, atol=1e-4)


def test_regularizer_is_zero_only_at_binary_h_and_alpha_learns() -> None:
    w = torch.randn(4, 4)
    q = _calibrated(w, bit=2)
    q.init_rounding(w)
    before = q.alpha.detach().clone()
    opt = torch.optim.Adam([q.alpha], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        q.rounding_loss(beta=2.0).backward()
        opt.step()
    assert not torch.equal(before, q.alpha)
    h = rectified_sigmoid(q.alpha)
    assert q.rounding_loss(2.0).item() < 1e-3
    assert torch.all((h == 0) | (h == 1))


def test_weight_only_and_harden_guard() -> None:
    with pytest.raises(ValueError, match="weights only"):
        AdaRoundFakeQuantize(bit=4, is_weight=False)
    q = AdaRoundFakeQuantize(bit=4, is_weight=True)
    with pytest.raises(RuntimeError, match="init_rounding"):
        q.harden()
