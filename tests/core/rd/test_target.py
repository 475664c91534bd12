"""The distortion target: relative squared error per output, and its random-projection estimate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rdoq_plugins.rd import output_distortion, projection_loss
from rdoq_plugins.rd.target import output_weights


def test_distortion_is_the_sum_of_relative_squared_errors() -> None:
    fp = [torch.randn(2, 3, 4, 4), torch.randn(5) * 100]
    quant = [y + 0.1 * torch.randn_like(y) for y in fp]
    expected = sum(float(((q.double() - y.double()) ** 2).sum() / (y.numel() * (y.double() ** 2).mean()))
                   for y, q in zip(fp, quant))
    assert output_distortion(fp, quant) == pytest.approx(expected, rel=1e-9)
    assert output_distortion(fp, [y.clone() for y in fp]) == 0.0
    assert output_weights(fp) == pytest.approx([1 / float((y.double() ** 2).sum()) for y in fp], rel=1e-9)


def test_every_output_counts_by_its_relative_error() -> None:
    small, large = torch.randn(3, 2) * 1e-3, torch.randn(64, 64) * 1e3
    one = output_distortion([small, large], [1.1 * small, large])
    other = output_distortion([small, large], [small, 1.1 * large])
    assert one == pytest.approx(0.01, rel=1e-6) and other == pytest.approx(0.01, rel=1e-6)
    scaled = output_distortion([7 * small, 7 * large], [7 * 1.1 * small, 7 * large])
    assert scaled == pytest.approx(one, rel=1e-6)


def test_output_count_must_match_and_not_be_empty() -> None:
    with pytest.raises(ValueError, match="2 FP outputs but 1 quantized"):
        output_distortion([torch.ones(2), torch.ones(2)], [torch.ones(2)])
    with pytest.raises(ValueError, match="no outputs"):
        output_distortion([], [])


def test_projection_gradients_estimate_the_distortion() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(3, 4) * 20
    x = torch.randn(4, requires_grad=True)
    delta = 0.05 * torch.randn(4)
    with torch.no_grad():
        true = output_distortion([a @ x, b @ x], [a @ (x + delta), b @ (x + delta)])
    gen = torch.Generator().manual_seed(0)
    squares = []
    for _ in range(4000):
        (g,) = torch.autograd.grad(projection_loss([a @ x, b @ x], gen), x)
        squares.append(float(g @ delta) ** 2)
    assert np.mean(squares) == pytest.approx(true, rel=0.1)
    # The generator decides the projection: the same seed gives the same gradient.
    g1, g2 = (torch.autograd.grad(projection_loss([a @ x], torch.Generator().manual_seed(5)), x)[0] for _ in range(2))
    assert torch.equal(g1, g2)
