"""The official 2-D (width x zero point) weight search: the best of its grid, never worse than the
1-D ratio search, and asymmetric where the data is."""
from __future__ import annotations

import torch

from rdoq_plugins.granularity import PerChannel, PerTensor
from rdoq_plugins.observers import GridMSEObserver, MSEObserver
from rdoq_plugins.observers.base import range_to_qparams
from rdoq_plugins.quant.uniform import fake_quantize


def _lp(x: torch.Tensor, lo: float, hi: float, bits: int, p: float = 2.4) -> float:
    s, z = range_to_qparams(torch.tensor([lo]), torch.tensor([hi]), torch.tensor([bits]), False)
    return float((fake_quantize(x, s, z, torch.tensor([bits]), False, PerTensor()) - x).abs().pow(p).sum())


def _brute_force(x: torch.Tensor, bits: int) -> float:
    """The smallest error over the official grid, one candidate at a time."""
    lo, hi = float(x.min()), float(x.max())
    levels = 2**bits - 1
    best = _lp(x, lo, hi, bits)
    for k in range(1, 101):
        width = (hi - lo) * k / 100
        step = width / levels
        for z in range(levels + 1):
            best = min(best, _lp(x, -z * step, width - z * step, bits))
    return best


def test_the_grid_finds_its_best_candidate() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(3000) * 0.2 - 0.5, torch.randn(300) * 2.0 + 1.0])  # skewed, both signs
    obs = GridMSEObserver()
    obs(x, torch.tensor([3]))
    assert _lp(x, float(obs.lo), float(obs.hi), 3) <= _brute_force(x, 3) * (1 + 1e-5)


def test_never_worse_than_the_ratio_search_per_channel() -> None:
    torch.manual_seed(1)
    w = torch.randn(6, 200) * torch.linspace(0.1, 2, 6)[:, None] + torch.linspace(-1, 1, 6)[:, None]
    w[0] = w[0].abs()  # one channel of one sign: the 1-D search
    grid, ratio = GridMSEObserver(PerChannel(0), 6), MSEObserver(PerChannel(0), 6)
    grid(w, torch.tensor([4]))
    ratio(w, torch.tensor([4]))
    for c in range(6):
        g = _lp(w[c], float(grid.lo[c]), float(grid.hi[c]), 4)
        r = _lp(w[c], float(ratio.lo[c]), float(ratio.hi[c]), 4)
        assert g <= r * (1 + 1e-5), c
    # Skewed channels clip asymmetrically: the chosen range is not a shrunk [min, max].
    lo0, hi0 = w.amin(1), w.amax(1)
    assert any(abs(float(grid.lo[c] / lo0[c]) - float(grid.hi[c] / hi0[c])) > 1e-3 for c in range(1, 6))
