"""Lp-search observers on known distributions, and their subsampling of long rows."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerChannel, PerTensor
from rdoq_plugins.observers import AvgMSEFastObserver, AvgMSEObserver, MSEFastObserver, MSEObserver
from rdoq_plugins.observers.mse import strided_index
from rdoq_plugins.quant.uniform import fake_quantize

BITS4 = torch.tensor([4])


def _lp(x: torch.Tensor, lo: float, hi: float, bits: int, p: float = 2.4) -> float:
    from rdoq_plugins.observers.base import range_to_qparams

    s, z = range_to_qparams(torch.tensor([lo]), torch.tensor([hi]), torch.tensor([bits]), False)
    return float((fake_quantize(x, s, z, torch.tensor([bits]), False, PerTensor()) - x).abs().pow(p).sum())


@pytest.mark.parametrize("cls", [MSEObserver, MSEFastObserver])
def test_mse_clips_the_tail_of_a_heavy_tailed_distribution(cls: type) -> None:
    # Laplace data with a few huge outliers: the Lp-optimal 3-bit range is far inside min/max.
    x = torch.distributions.Laplace(0.0, 1.0).sample((50_000,))
    x[:2] = torch.tensor([30.0, -30.0])
    obs = cls()
    obs(x, torch.tensor([3]))
    assert obs.hi.item() < 0.5 * 30 and obs.lo.item() > -0.5 * 30
    mse_err = _lp(x, obs.lo.item(), obs.hi.item(), 3)
    assert mse_err < 0.5 * _lp(x, float(x.min()), float(x.max()), 3)


def test_fast_search_is_close_to_the_grid_search() -> None:
    x = torch.randn(64, 256) * torch.linspace(0.1, 3, 64)[:, None]
    bits = torch.full((64,), 4)
    grid, fast = MSEObserver(PerChannel(0), 64), MSEFastObserver(PerChannel(0), 64)
    grid(x, bits)
    fast(x, bits)
    e_grid = sum(_lp(x[c], grid.lo[c].item(), grid.hi[c].item(), 4) for c in range(64))
    e_fast = sum(_lp(x[c], fast.lo[c].item(), fast.hi[c].item(), 4) for c in range(64))
    assert e_fast <= 1.02 * e_grid


def test_gaussian_at_8_bits_keeps_almost_the_full_range() -> None:
    x = torch.randn(50_000)
    obs = MSEObserver()
    obs(x, torch.tensor([8]))
    assert obs.hi.item() > 0.6 * x.max().item()


def test_averaging_mse_observer_averages_batches() -> None:
    obs = AvgMSEFastObserver()
    obs(torch.rand(1000), BITS4)
    first = obs.hi.item()
    obs(torch.rand(1000) * 3, BITS4)
    assert first < obs.hi.item() < 3 * first


def test_strided_index_is_exact_beyond_float32_precision() -> None:
    n = 2 * 256 * 200 * 336  # a layer1 input of 2 images at 1344x800: float32 rounds n - 1 up to n
    assert int(torch.linspace(0, n - 1, 65_536).long()[-1]) >= n  # float32 indices overshoot the last element
    idx = strided_index(n, 65_536)
    assert idx.dtype == torch.long and int(idx[0]) == 0 and int(idx[-1]) == n - 1
    assert bool((idx.diff() > 0).all())


@pytest.mark.parametrize("observer", [MSEObserver, AvgMSEObserver, MSEFastObserver, AvgMSEFastObserver])
def test_lp_observers_take_a_row_longer_than_2_pow_24(observer: type) -> None:
    x = torch.randn(1, (1 << 24) + 7)  # one per-tensor row, like a layer1 input at 1333x800
    x[0, -1] = 50.0  # the last element sets the max, so the full range is used
    obs = observer()
    obs(x, BITS4)
    assert obs.hi.item() <= 50.0 and obs.lo.item() < 0 and torch.isfinite(obs.calculate_qparams(BITS4)[0]).all()
