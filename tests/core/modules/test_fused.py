"""A conv with its ReLU fused in: the same values and keys as conv + ReLU, an output quantizer that
sees the ReLU output, no BN folded across the ReLU, and a backward that survives a framework's
in-place ReLU after it (QDrop's fused conv + ReLU, Wei et al., ICLR 2022)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins import calibrate, load_quant_config, quantize_model
from rdoq_plugins.modules import ConvReLU2d, QuantConv2d, QuantConvReLU2d, fuse_conv_bn, fuse_relu
from tests.conftest import MINMAX


def test_fused_conv_computes_conv_then_relu_with_the_same_keys() -> None:
    conv = nn.Conv2d(3, 4, 3)
    keys = list(conv.state_dict())
    x = torch.randn(2, 3, 8, 8)
    expected = torch.relu(conv(x))
    fuse_relu(conv)
    assert type(conv) is ConvReLU2d and list(conv.state_dict()) == keys
    assert torch.equal(conv(x), expected)
    fuse_relu(conv)  # twice changes nothing
    assert type(conv) is ConvReLU2d
    with pytest.raises(TypeError, match="only a plain nn.Conv2d"):
        fuse_relu(nn.Conv1d(3, 4, 3))


def test_quantized_twin_quantizes_the_relu_output() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    fuse_relu(model[0])
    output = {**MINMAX, "a_qconfig": {**MINMAX["a_qconfig"], "position": "output"}}
    wrapped = quantize_model(model, load_quant_config(output))
    layer = wrapped["0"]
    assert type(layer) is QuantConvReLU2d and layer.input_quantizer is None
    x = torch.randn(4, 3, 8, 8)
    calibrate(model, [x], lambda m, b: m(b))
    assert float(layer.output_quantizer.observer.lo) == 0.0  # observed after the ReLU
    with torch.no_grad():
        y = model(x)
    w = layer.weight_quantizer(layer.weight)
    assert torch.equal(y, layer.output_quantizer.quantize(torch.relu(layer._conv_forward(x, w, layer.bias))))
    q = quantize_model(nn.Sequential(nn.Conv2d(3, 4, 3)), load_quant_config(MINMAX))["0"]
    assert type(q) is QuantConv2d
    fuse_relu(q)
    assert type(q) is QuantConvReLU2d


def test_no_bn_is_folded_across_the_fused_relu() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    fuse_relu(model[0])
    fuse_conv_bn(model)
    assert isinstance(model[1], nn.BatchNorm2d)


def test_backward_survives_an_in_place_relu_after_the_fused_conv() -> None:
    conv = nn.Conv2d(3, 4, 3)
    fuse_relu(conv)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    nn.ReLU(inplace=True)(conv(x)).sum().backward()  # mmdet's blocks apply their ReLU again, in place
    assert x.grad is not None and torch.isfinite(x.grad).all()
