"""The observer base: ranges per unit, and ranges turned into scale and zero point."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerChannel, PerGroup
from rdoq_plugins.observers import MinMaxObserver
from rdoq_plugins.observers.base import range_to_qparams, reduce_to_units

BITS4 = torch.tensor([4])


def test_asymmetric_qparams_include_zero_and_map_the_range() -> None:
    obs = MinMaxObserver()
    obs(torch.tensor([0.5, 3.5]), BITS4)  # range widened to [0, 3.5]
    scale, zp = obs.calculate_qparams(BITS4)
    assert scale.item() == pytest.approx(3.5 / 15)
    assert zp.item() == 0


def test_symmetric_qparams() -> None:
    obs = MinMaxObserver(symmetric=True)
    obs(torch.tensor([-2.0, 1.0]), torch.tensor([8]))
    scale, zp = obs.calculate_qparams(torch.tensor([8]))
    assert scale.item() == pytest.approx(2.0 / 127.5) and zp.item() == 0


def test_per_channel_and_per_group_ranges() -> None:
    x = torch.stack([torch.full((5,), float(c)) for c in range(1, 7)])  # channel c holds value c
    x[:, 0] = -1.0
    ch = MinMaxObserver(PerChannel(0), num_channels=6)
    ch(x, torch.full((6,), 8))
    assert ch.hi.tolist() == [1, 2, 3, 4, 5, 6] and ch.lo.tolist() == [-1] * 6
    grp = MinMaxObserver(PerGroup(0, 4), num_channels=6)
    grp(x, torch.full((2,), 8))
    assert grp.hi.tolist() == [4, 6]


def test_wrong_channel_count_and_no_data_are_errors() -> None:
    obs = MinMaxObserver(PerChannel(0), num_channels=4)
    with pytest.raises(ValueError, match="built for 4 channels"):
        obs(torch.randn(3, 2), torch.full((4,), 8))
    with pytest.raises(RuntimeError, match="before any data"):
        obs.calculate_qparams(torch.full((4,), 8))


def test_qparams_per_unit_bits_and_degenerate_ranges() -> None:
    lo, hi = torch.tensor([-1.0, 0.0, -2.0]), torch.tensor([3.0, 0.0, 2.0])
    scale, zp = range_to_qparams(lo, hi, torch.tensor([2, 8, 0]), symmetric=False)
    assert scale[0].item() == pytest.approx(4.0 / 3) and zp[0].item() == 1  # 0 is exactly the integer 1
    assert scale[1].item() > 0 and zp[1].item() == 0  # an all-zero unit still gets a usable step
    assert torch.isfinite(scale[2]) and zp[2].item() == 0  # a pruned unit
    # The rounded zero point shifts the grid by less than half a step against [lo, hi].
    assert abs((lo[0] / scale[0] + zp[0]).item()) <= 0.5 and abs((hi[0] / scale[0] + zp[0]).item() - 3) <= 0.5


def test_reduce_to_units() -> None:
    values, idx = torch.tensor([3.0, -1.0, 5.0, 2.0]), torch.tensor([0, 0, 1, 1])
    assert reduce_to_units(values, idx, 2, "amin").tolist() == [-1.0, 2.0]
    assert reduce_to_units(values, idx, 2, "amax").tolist() == [3.0, 5.0]
    assert reduce_to_units(values, idx, 2, "sum").tolist() == [2.0, 7.0]


def test_channels_other_than_axis_zero() -> None:
    x = torch.randn(2, 3, 4)
    obs = MinMaxObserver(PerChannel(1), num_channels=3)
    obs(x, torch.full((3,), 8))
    assert torch.equal(obs.hi, x.transpose(0, 1).reshape(3, -1).amax(1))
    assert torch.equal(obs.lo, x.transpose(0, 1).reshape(3, -1).amin(1))
    grouped = MinMaxObserver(PerGroup(1, 2), num_channels=3)
    grouped(x, torch.full((2,), 8))
    assert grouped.hi.tolist() == [x[:, :2].max().item(), x[:, 2].max().item()]
