"""Capturing unit inputs / outputs and reconstructing a model unit by unit."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import capture_io, reconstruct_units


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    block = lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())  # noqa: E731
    return nn.Sequential(block(4), block(4), nn.Conv2d(4, 2, 1)).eval()


def test_capture_stops_at_the_unit() -> None:
    model = _model()
    calls: list[str] = []
    model[2].register_forward_pre_hook(lambda *_: calls.append("last"))
    x = torch.randn(3, 4, 5, 5)
    inp, out = capture_io(model, model[1], [x, x], lambda m, b: m(b))
    assert out is not None and torch.allclose(inp[:3], model[0](x)) and torch.allclose(out[:3], model[1](model[0](x)))
    assert inp.shape[0] == 6 and calls == []
    inp_only, none = capture_io(model, model[1], [x], lambda m, b: m(b), with_output=False)
    assert none is None and torch.equal(inp_only, inp[:3])


def test_capture_of_an_unreached_unit_is_an_error() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match="never reached"):
        capture_io(model, model[2], [torch.randn(1, 4, 5, 5)], lambda m, b: m[0](b))


def test_unit_by_unit_reconstruction_lowers_the_model_error() -> None:
    fp = _model()
    x = torch.randn(64, 4, 6, 6)
    batches = list(x.split(16))
    model = copy.deepcopy(fp)
    # The raw input stays FP: its rounding error is one reconstruction cannot undo.
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 2}, "overrides": {"0.0": {"a_qconfig": None}}}))
    calibrate(model, batches, lambda m, b: m(b))
    with torch.no_grad():
        before = (model(x) - fp(x)).pow(2).mean().item()
    stats = reconstruct_units(model, fp, ["0", "1", "2"], batches, lambda m, b: m(b),
                              QDropReconstructor(ReconConfig(iters=300, batch_size=8)))
    with torch.no_grad():
        after = (model(x) - fp(x)).pow(2).mean().item()
    assert list(stats) == ["0", "1", "2"] and all(s.iters == 300 for s in stats.values())
    assert after < 0.9 * before  # random weights and data: AdaRound gains ~20-30% here
