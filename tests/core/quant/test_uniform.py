"""Exact integer grids, clipping and straight-through gradients of the uniform quantizer."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerChannel, PerGroup, PerTensor
from rdoq_plugins.quant.uniform import fake_quantize, per_unit_bits, quant_bounds


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("symmetric", [False, True])
def test_values_lie_on_the_integer_grid_and_clip(bits: int, symmetric: bool) -> None:
    scale, zp = torch.tensor([0.1]), torch.tensor([0.0 if symmetric else 3.0])
    b = torch.tensor([bits])
    x = torch.linspace(-1.5, 1.5, 20001) * 2.0**bits * 0.1  # reaches past both ends
    q_min, q_max = quant_bounds(b, symmetric)
    x_hat = fake_quantize(x, scale, zp, b, symmetric, PerTensor())
    q = x_hat / scale + zp
    assert torch.allclose(q, q.round(), atol=1e-3)
    assert q.min() >= q_min - 1e-3 and q.max() <= q_max + 1e-3
    # Clipping: the extremes of the input hit the ends of the grid.
    assert q[0].round() == q_min and q[-1].round() == q_max
    # Inside the range the error is at most half a step.
    inside = (x / scale + zp >= q_min) & (x / scale + zp <= q_max)
    float_eps = 4 * torch.finfo(torch.float32).eps * x.abs().max()  # float32 at 16 bits
    assert (x_hat[inside] - x[inside]).abs().max() <= scale / 2 + float_eps


def test_bounds_follow_the_bit_width() -> None:
    lo, hi = quant_bounds(torch.tensor([0, 2, 4, 8]), symmetric=True)
    assert lo.tolist() == [0, -2, -8, -128] and hi.tolist() == [0, 1, 7, 127]
    lo, hi = quant_bounds(torch.tensor([0, 2, 4, 8]), symmetric=False)
    assert lo.tolist() == [0, 0, 0, 0] and hi.tolist() == [0, 3, 15, 255]


def test_zero_bits_prunes_the_unit_to_exact_zero() -> None:
    x = torch.randn(4, 3) + 5
    g = PerChannel(0)
    x_hat = fake_quantize(x, torch.full((4,), 0.5), torch.full((4,), 2.0), torch.tensor([4, 0, 8, 0]), False, g)
    assert torch.all(x_hat[1] == 0) and torch.all(x_hat[3] == 0)
    assert torch.all(x_hat[0] != 0)


def test_per_group_bits_use_each_groups_grid() -> None:
    x = torch.randn(6, 100)
    g = PerGroup(0, size=4)  # groups: channels 0-3, 4-5
    bits = torch.tensor([2, 8])
    x_hat = fake_quantize(x, torch.full((2,), 0.05), torch.zeros(2), bits, True, g)
    assert len(x_hat[:4].unique()) <= 4
    assert len(x_hat[4:].unique()) > 4


def test_per_channel_axis_other_than_zero() -> None:
    x = torch.randn(2, 3, 5)
    scale = torch.tensor([0.1, 1.0, 10.0])
    x_hat = fake_quantize(x, scale, torch.zeros(3), torch.tensor([8, 8, 8]), True, PerChannel(1))
    for c in range(3):
        q = x_hat[:, c] / scale[c]
        assert torch.allclose(q, q.round(), atol=1e-4)


def test_ste_gradient_matches_finite_differences_of_the_smoothed_function() -> None:
    # Straight-through: d x_hat / d x is 1 inside the range, 0 where clipped.
    x = torch.tensor([-10.0, -0.26, 0.0, 0.33, 10.0], requires_grad=True)
    x_hat = fake_quantize(x, torch.tensor([0.1]), torch.tensor([0.0]), torch.tensor([4]), True, PerTensor())
    x_hat.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_scale_gradient_is_the_lsq_gradient() -> None:
    # LSQ (Esser et al. 2020, eq. 3): d x_hat / d s = round(x/s) - x/s inside, q_min or q_max outside.
    s = torch.tensor([0.1], requires_grad=True)
    x = torch.tensor([0.234, -0.51, 5.0, -5.0])
    x_hat = fake_quantize(x, s, torch.tensor([0.0]), torch.tensor([4]), True, PerTensor())
    grads = [torch.autograd.grad(x_hat[i], s, retain_graph=True)[0].item() for i in range(4)]
    v = x / 0.1
    expected = [(v[0].round() - v[0]).item(), (v[1].round() - v[1]).item(), 7.0, -8.0]
    assert grads == pytest.approx(expected, abs=1e-4)


def test_per_unit_bits_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="0..16"):
        per_unit_bits(17, 3)
    with pytest.raises(ValueError, match="expected 1 or 3"):
        per_unit_bits(torch.tensor([2, 3]), 3)


def test_inference_path_is_bitwise_the_training_path() -> None:
    x = torch.randn(4, 8, 16, 16) * 3
    args = (torch.rand(8) * 0.2 + 0.01, torch.randint(0, 15, (8,)).float(), torch.full((8,), 4), False, PerChannel(1))
    with torch.no_grad():
        fast = fake_quantize(x, *args)
    slow = fake_quantize(x.requires_grad_(True), *args)
    assert torch.equal(fast, slow.detach())
