"""Folded Conv-BN equals the unfolded output."""
from __future__ import annotations

import torch
from torch import nn

from rdoq_plugins.modules import fold_bn, fuse_conv_bn


def _randomized_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)


def test_folded_conv_bn_matches_unfolded() -> None:
    for bias in (True, False):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=bias), nn.BatchNorm2d(8), nn.ReLU()).eval()
        _randomized_bn(model[1])
        x = torch.randn(2, 3, 10, 10)
        ref = model(x)
        fuse_conv_bn(model)
        assert isinstance(model[1], nn.Identity)
        assert torch.allclose(model(x), ref, atol=1e-5)


def test_nested_blocks_and_linear_bn1d() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.downsample = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.bn1(self.conv1(x))) + self.downsample(x)

    model = nn.Sequential(Block(), nn.Flatten(), nn.Linear(64, 5), nn.BatchNorm1d(5)).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _randomized_bn(m)
    x = torch.randn(3, 4, 4, 4)
    ref = model(x)
    fuse_conv_bn(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert torch.allclose(model(x), ref, atol=1e-5)


def test_mismatched_channels_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="cannot fold"):
        fold_bn(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(4))
