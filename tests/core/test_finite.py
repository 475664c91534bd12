"""NaN or infinity met while calibrating or reconstructing stops the run, naming the layer."""
from __future__ import annotations

import copy

import pytest
import torch

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.errors import NonFiniteError
from rdoq_plugins.finite import check_parameters, check_quantizers
from rdoq_plugins.recon import reconstruct_units
from tests.core.recon.conftest import small_cnn


def _calibrated(batches: list[torch.Tensor]) -> torch.nn.Module:
    model = small_cnn()
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 4}}))
    calibrate(model, batches, lambda m, b: m(b))
    return model


def test_a_nan_activation_names_the_layer_whose_range_it_spoiled() -> None:
    clean = _calibrated([torch.randn(2, 4, 6, 6) for _ in range(2)])
    check_quantizers(clean, "calibration")  # nothing to report
    x = torch.randn(2, 4, 6, 6)
    x[0, 1, 2, 3] = float("nan")
    model = _calibrated([torch.randn(2, 4, 6, 6), x])
    with pytest.raises(NonFiniteError, match=r"calibration: layer 0\.0 \(input quantizer\) has 1 non-finite"):
        check_quantizers(model, "calibration")


def test_a_nan_loss_stops_reconstruction_at_its_unit() -> None:
    fp = small_cnn()
    batches = [torch.randn(2, 4, 6, 6) for _ in range(2)]
    model = _calibrated(batches)
    bad = copy.deepcopy(fp)
    with torch.no_grad():
        bad[1][0].bias[0] = float("inf")  # the FP target of unit "1" is infinite
    with pytest.raises(NonFiniteError, match=r"reconstruction of 1: the reconstruction loss is (nan|inf) at step 0"):
        reconstruct_units(model, bad, ["0", "1", "2"], batches, lambda m, b: m(b),
                          QDropReconstructor(ReconConfig(iters=5, batch_size=2)))


def test_parameters_are_named_with_their_unit() -> None:
    model = small_cnn()
    with torch.no_grad():
        model[2].weight[0, 0, 0, 0] = float("nan")
    check_parameters(model[0], "reconstruction of 0", "0")
    with pytest.raises(NonFiniteError, match=r"reconstruction of 2: 2\.weight holds 1 non-finite values"):
        check_parameters(model[2], "reconstruction of 2", "2")
