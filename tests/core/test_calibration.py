"""Calibration: activation ranges on FP activations, then the weights, then quantization on."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins import calibrate, calibrate_weights, load_quant_config, quantize_model
from rdoq_plugins.modules import quantizers

MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


def test_calibration_that_misses_a_layer_is_an_error() -> None:
    model = _net()
    quantize_model(model, load_quant_config(MINMAX))
    with pytest.raises(RuntimeError, match="without data"):
        calibrate(model, [torch.randn(1, 3, 8, 8)], lambda m, b: m[0](b))


def test_activation_ranges_come_from_fp_activations_and_everything_ends_on() -> None:
    model = _net()
    fp = _net()
    fp.load_state_dict(model.state_dict())
    quantize_model(model, load_quant_config(MINMAX))
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    seen_by_progress: list[int] = []

    def progress(items):  # type: ignore[no-untyped-def]
        for i, b in enumerate(items):
            seen_by_progress.append(i)
            yield b

    assert calibrate(model, batches, lambda m, b: m(b), progress) == 3 and seen_by_progress == [0, 1, 2]
    with torch.no_grad():
        fc_inputs = torch.cat([fp[2](fp[1](fp[0](b))) for b in batches])
    aq = model[3].input_quantizer
    assert (aq.observer.lo.item(), aq.observer.hi.item()) == (float(fc_inputs.min()), float(fc_inputs.max()))
    assert int(aq.observer.num_batches) == 3
    assert all(int(q.fake_quant_enabled) == 1 and int(q.observer_enabled) == 0 for q in quantizers(model))
    w = model[0].weight
    assert model[0].weight_quantizer.observer.hi.tolist() == w.detach().flatten(1).amax(1).tolist()


def test_weights_are_observed_afresh_and_counted() -> None:
    model = _net()
    quantize_model(model, load_quant_config(MINMAX))
    assert calibrate_weights(model) == 2
    scale = model[0].weight_quantizer.scale.clone()
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    calibrate_weights(model)
    assert torch.allclose(model[0].weight_quantizer.scale, 0.5 * scale)  # no envelope with the old weight


def test_no_batches_is_an_error() -> None:
    model = _net()
    quantize_model(model, load_quant_config(MINMAX))
    with pytest.raises(RuntimeError, match="saw 0 batches"):
        calibrate(model, [], lambda m, b: m(b))
