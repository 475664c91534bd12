"""Candidate grids (bits x clipping ratios), group ranges and per-group fake quantization."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd import CandidateGrid, candidate_qparams, group_ranges, quantize_groups


def test_grid_iterates_every_bit_ratio_pair_in_order() -> None:
    grid = CandidateGrid((0, 3, 8), (1.0, 0.6))
    assert list(grid) == [(0, 0, 0, 1.0), (0, 1, 0, 0.6), (1, 0, 3, 1.0), (1, 1, 3, 0.6), (2, 0, 8, 1.0),
                          (2, 1, 8, 0.6)]
    default = CandidateGrid()
    assert default.bits == tuple(range(11)) and len(list(default)) == 11 * len(default.ratios)


@pytest.mark.parametrize(
    ("bits", "ratios", "match"),
    [
        ((), (1.0,), "must be in 0..16"),
        ((2, 17), (1.0,), "must be in 0..16"),
        ((-1, 2), (1.0,), "must be in 0..16"),
        ((4, 2), (1.0,), "increasing and unique"),
        ((2, 2, 4), (1.0,), "increasing and unique"),
        ((2, 4), (), r"\(0, 1\]"),
        ((2, 4), (1.0, 0.0), r"\(0, 1\]"),
        ((2, 4), (1.2,), r"\(0, 1\]"),
    ],
)
def test_bad_grids_are_rejected(bits: tuple[int, ...], ratios: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CandidateGrid(bits, ratios)


def test_group_ranges_are_per_group_and_include_zero() -> None:
    x = torch.randn(6, 5, 3)
    x[4:] = x[4:].abs() + 0.5  # the second group is all positive
    lo, hi = group_ranges(x, PerGroup(0, 4))
    assert lo.shape == hi.shape == (2,)
    assert lo[0] == x[:4].min() and hi[0] == x[:4].max()
    assert lo[1] == 0.0 and hi[1] == x[4:].max()
    lo1, hi1 = group_ranges(x, PerGroup(1, 2))  # groups along axis 1: channels 0-1, 2-3, 4
    assert torch.equal(hi1, torch.stack([x[:, list(c)].max().clamp(min=0) for c in ((0, 1), (2, 3), (4,))]))
    assert torch.equal(lo1, torch.stack([x[:, list(c)].min().clamp(max=0) for c in ((0, 1), (2, 3), (4,))]))


def test_quantized_groups_lie_on_their_own_grid() -> None:
    x = torch.randn(8, 32)
    g = PerGroup(0, 4)
    lo, hi = group_ranges(x, g)
    bits = torch.tensor([3, 6])
    x_hat = quantize_groups(x, g, lo, hi, bits, 1.0)
    scale, zero_point = candidate_qparams(lo, hi, bits, 1.0)
    assert torch.allclose(scale, (hi - lo) / (2.0**bits - 1))
    for k, rows in enumerate((slice(0, 4), slice(4, 8))):
        q = x_hat[rows] / scale[k] + zero_point[k]
        assert torch.allclose(q, q.round(), atol=1e-4)
        assert q.round().unique().numel() <= 2 ** int(bits[k])
        assert (x_hat[rows] - x[rows]).abs().max() <= scale[k] / 2 + 1e-6  # nothing clipped at ratio 1


def test_ratio_clips_and_zero_bits_prune() -> None:
    x = torch.linspace(-1.0, 3.0, 400).reshape(4, 100)
    g = PerGroup(0, 2)
    lo, hi = group_ranges(x, g)
    clipped = quantize_groups(x, g, lo, hi, 8, 0.5)
    half_step = 0.5 * float(candidate_qparams(lo, hi, 8, 0.5)[0].max())  # the zero point is rounded
    assert clipped.max() <= 0.5 * float(hi.max()) + half_step and clipped.min() >= 0.5 * float(lo.min()) - half_step
    assert clipped.max() < 0.6 * float(hi.max()) and x.max() > 0.9 * float(hi.max())
    mixed = quantize_groups(x, g, lo, hi, torch.tensor([0, 8]), torch.tensor([1.0, 0.5]))
    assert torch.all(mixed[:2] == 0)
    assert torch.equal(mixed[2:], clipped[2:])
