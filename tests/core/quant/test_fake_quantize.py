"""The fake quantizer: observe then quantize, its switches, QDrop's dropping in training mode, and
regrouping into per-unit bits."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerChannel, PerGroup, PerTensor
from rdoq_plugins.observers import MinMaxObserver, MSEObserver
from rdoq_plugins.quant import FakeQuantize


def test_quantizer_drops_only_in_training_mode() -> None:
    q = FakeQuantize(bit=2, granularity=PerTensor())
    q.scale.fill_(1.0)
    q.enable_fake_quant(True)
    q.set_keep_prob(0.5)
    x = torch.rand(100_000) * 0.49 + 0.5  # every value rounds to 1
    q.train()
    out = q(x)
    frac_quantized = (out == 1.0).float().mean().item()
    assert frac_quantized == pytest.approx(0.5, abs=0.01)
    q.eval()
    assert torch.all(q(x) == 1.0)


def test_keep_prob_is_validated() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FakeQuantize().set_keep_prob(1.5)


def test_switches_observe_and_quantize() -> None:
    q = FakeQuantize(bit=4, granularity=PerChannel(0), num_channels=3)
    x = torch.randn(3, 50) * torch.tensor([[0.1], [1.0], [10.0]])
    assert q(x) is x and int(q.observer.num_batches) == 0  # both switches start off
    q.enable_observer(True)
    assert q(x) is x and int(q.observer.num_batches) == 1
    scale, zero_point = q.observer.calculate_qparams(q.bits)
    assert torch.equal(q.scale, scale) and torch.equal(q.zero_point, zero_point)
    q.enable_observer(False)
    q.enable_fake_quant(True)
    y = q(x)
    assert torch.equal(y, q.quantize(x)) and not torch.equal(y, x)
    assert all(y[c].unique().numel() <= 16 for c in range(3))
    assert int(q.observer.num_batches) == 1


def test_regrouping_rebuilds_units_bits_and_an_empty_observer() -> None:
    q = FakeQuantize(observer="MSEObserver", bit=4, granularity=PerChannel(0), num_channels=8,
                     observer_kwargs={"p": 2.0})
    q.observe(torch.randn(8, 4))
    q.set_granularity(PerGroup(0, 3), 8, torch.tensor([2, 4, 8]))
    assert q.granularity == PerGroup(0, 3) and q.bits.tolist() == [2, 4, 8] and q.scale.shape == (3,)
    assert isinstance(q.observer, MSEObserver) and q.observer.p == 2.0 and int(q.observer.num_batches) == 0
    q.set_bits(6)
    assert q.bits.tolist() == [6, 6, 6]
    q.set_bits(torch.tensor([1, 2, 3]))
    assert q.bits.tolist() == [1, 2, 3]
    q.set_granularity(PerTensor(), 8, 4)
    assert q.num_channels == 1 and q.bits.tolist() == [4] and isinstance(FakeQuantize().observer, MinMaxObserver)
    assert "bits=4" in repr(q) and "bits=[1, 2, 3]" not in repr(q)


def test_bit_width_is_checked() -> None:
    with pytest.raises(ValueError, match="bit must be in 0..16"):
        FakeQuantize(bit=17)
