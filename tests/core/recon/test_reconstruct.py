"""Block reconstruction lowers a unit's output error and ends with hard rounding."""
from __future__ import annotations

import torch
from torch import nn

from rdoq_plugins import QDropReconstructor, TensorCache, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import EarlyStopConfig, ReconConfig
from rdoq_plugins.quant import RoundingState
from rdoq_plugins.recon import output_error

W2A4 = {"w_qconfig": {"bit": 2}, "a_qconfig": {"bit": 4}}


def _unit() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1)).eval()


def _setup() -> tuple[nn.Sequential, TensorCache, torch.Tensor]:
    unit = _unit()
    x = torch.randn(32, 8, 8, 8)
    with torch.no_grad():
        target = unit(x)
    quantize_model(unit, load_quant_config(W2A4))
    calibrate(unit, x.split(8), lambda m, b: m(b))
    return unit, TensorCache(x, x, target), target


def test_reconstruction_reduces_the_output_error() -> None:
    unit, cache, target = _setup()
    with torch.no_grad():
        before = output_error(unit(cache.quant_in), target).item()
    stats = QDropReconstructor(ReconConfig(iters=300, batch_size=4, warm_up=0.2))(unit, cache)
    with torch.no_grad():
        after = output_error(unit(cache.quant_in), target).item()
    assert stats.iters == 300
    assert after < 0.7 * before
    for m in unit.modules():
        if hasattr(m, "rounding_state"):
            assert m.state is RoundingState.HARD
    assert all(q.keep_prob.item() == 1.0 for q in unit.modules() if hasattr(q, "keep_prob"))
    assert all(p.requires_grad for p in (unit[0].weight, unit[0].bias))


def test_reconstruction_is_reproducible() -> None:
    outs = []
    for _ in range(2):
        unit, cache, _ = _setup()
        torch.manual_seed(1)
        QDropReconstructor(ReconConfig(iters=20, batch_size=2), seed=3)(unit, cache)
        with torch.no_grad():
            outs.append(unit(cache.quant_in))
    assert torch.equal(outs[0], outs[1])


def test_early_stop_on_a_plateau() -> None:
    unit, cache, _ = _setup()
    cfg = ReconConfig(iters=5000, batch_size=4, warm_up=0.0, lr=0.0, scale_lr=1e-12,
                      early_stop=EarlyStopConfig(window=20, min_rel_improvement=0.05))
    stats = QDropReconstructor(cfg)(unit, cache)
    assert stats.stopped_early and stats.iters < 200


def test_bias_learning_is_off_by_default_and_fits_an_output_shift() -> None:
    """``bias_lr > 0`` trains the layer biases: a per-channel output shift that rounding and steps
    cannot express is absorbed; with the default the biases stay as they were."""
    errors: dict[float, float] = {}
    for bias_lr in (0.0, 1e-2):
        unit, cache, target = _setup()
        shifted = target + torch.linspace(-0.5, 0.5, target.shape[1]).view(1, -1, 1, 1)
        cache = TensorCache(cache.quant_in, cache.fp_in, shifted)
        bias_before = unit[2].bias.detach().clone()
        QDropReconstructor(ReconConfig(iters=300, batch_size=4, warm_up=0.2, bias_lr=bias_lr))(unit, cache)
        assert torch.equal(unit[2].bias, bias_before) == (bias_lr == 0.0)
        assert all(p.requires_grad for p in (unit[0].bias, unit[2].bias))
        with torch.no_grad():
            errors[bias_lr] = output_error(unit(cache.quant_in), shifted).item()
    assert errors[1e-2] < 0.5 * errors[0.0]
