"""state_dict save / load round-trips exactly, through torch.save with weights_only=True, into
quantizers built with other shapes."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from rdoq_plugins import (
    PerGroup,
    QDropReconstructor,
    TensorCache,
    calibrate,
    load_quant_config,
    quantize_model,
)
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.granularity import PerChannel
from rdoq_plugins.quant import LSQFakeQuantize


def _quantized(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
    quantize_model(model, load_quant_config({}))  # AdaRound + LSQ defaults
    return model


def test_round_trip_after_calibration_regrouping_and_adaround() -> None:
    model = _quantized(0)
    x = torch.randn(4, 3, 12, 12)
    calibrate(model, [x, x * 2], lambda m, b: m(b))
    # Regroup an activation quantizer into channel groups with their own bits (as RDOQ does).
    aq = model[2].input_quantizer
    aq.set_granularity(PerGroup(1, 4), 8, 4)
    aq.set_bits(torch.tensor([2, 6]))
    aq.observe(model[0](x))
    cache = TensorCache(x, x, model(x).detach())
    QDropReconstructor(ReconConfig(iters=5, batch_size=2))(model, cache)

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    fresh = _quantized(1)
    fresh.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert fresh[2].input_quantizer.granularity == PerGroup(1, 4)
    fresh.eval()
    model.eval()
    assert torch.equal(fresh(x), model(x))


def test_a_fresh_quantizer_adopts_saved_shapes_and_granularity() -> None:
    saved = LSQFakeQuantize(bit=4, granularity=PerChannel(0), num_channels=6)
    saved.set_granularity(PerGroup(0, 4), 6, torch.tensor([3, 5]))
    saved.observe(torch.randn(6, 10))
    fresh = LSQFakeQuantize(bit=8)  # per tensor: one scale, one bit-width
    fresh.load_state_dict(saved.state_dict())
    assert fresh.granularity == PerGroup(0, 4) and fresh.bits.tolist() == [3, 5]
    assert isinstance(fresh.scale, nn.Parameter) and torch.equal(fresh.scale, saved.scale)
    assert fresh.observer.lo.shape == (2,) and torch.equal(fresh.observer.hi, saved.observer.hi)
    assert fresh.observer.granularity == PerGroup(0, 4)
    w = torch.randn(6, 10)
    fresh.enable_fake_quant(True)
    saved.enable_fake_quant(True)
    assert torch.equal(fresh(w), saved(w))
    with pytest.raises(RuntimeError, match="Missing key"):
        LSQFakeQuantize(bit=8).load_state_dict({"scale": torch.ones(1)})
