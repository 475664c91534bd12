"""The extension point: which quantized wrapper replaces which layer type."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins import (
    ActPosition,
    QuantLayer,
    calibrate,
    load_quant_config,
    quantize_model,
    register_quant_layer,
)
from rdoq_plugins.modules import QuantConv2d, QuantLinear, quant_layer_for
from rdoq_plugins.modules.layer_map import foldable_types
from tests.conftest import MINMAX


def test_extension_point_registers_a_new_layer_type() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 1))
            self.in_features = self.out_features = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight[:, 0]

    @register_quant_layer(Scale)
    class QuantScale(QuantLayer, Scale):
        def forward_with_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return x * weight[:, 0]

    model = nn.Sequential(Scale())
    wrapped = quantize_model(model, load_quant_config(MINMAX), act_position=ActPosition.OUTPUT)
    assert isinstance(wrapped["0"], QuantScale) and wrapped["0"].output_quantizer is not None
    x = torch.randn(3, 4)
    calibrate(model, [x], lambda m, b: m(b))
    assert model(x).shape == (3, 4)


def test_lookup_follows_the_class_hierarchy() -> None:
    class MyConv(nn.Conv2d):
        pass

    assert quant_layer_for(MyConv(1, 1, 1)) is QuantConv2d
    assert quant_layer_for(nn.Linear(2, 2)) is QuantLinear
    assert quant_layer_for(QuantLinear.from_float(nn.Linear(2, 2))) is None  # already quantized
    assert quant_layer_for(nn.ReLU()) is None
    assert {nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear} <= set(foldable_types())


def test_a_wrapper_must_be_a_quant_layer() -> None:
    class NotAWrapper(nn.Module):
        pass

    with pytest.raises(TypeError, match="NotAWrapper must subclass QuantLayer"):
        register_quant_layer(nn.GELU)(NotAWrapper)  # type: ignore[arg-type]
    assert quant_layer_for(nn.GELU()) is None
