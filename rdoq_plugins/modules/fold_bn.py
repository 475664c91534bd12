"""Folding batch normalization into the preceding layer (Jacob et al., CVPR 2018, §3.2).

    W' = W * γ / sqrt(σ² + ε)            (per output channel, weight axis 0)
    b' = (b - μ) * γ / sqrt(σ² + ε) + β

QDrop folds BN before quantizing; otherwise a BN sits between a layer and its output quantizer.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rdoq_plugins.modules.fused import ConvReLU2d
from rdoq_plugins.modules.layer_map import foldable_types, quant_layer_for
from rdoq_plugins.modules.quant_layer import QuantLayer


@torch.no_grad()
def fold_bn(layer: nn.Module, bn: _BatchNorm) -> None:
    """Folds ``bn`` (eval-mode statistics) into ``layer``'s weight and bias in place."""
    # The weight with output channels on axis 0 (a view for layer types that store it otherwise).
    wrapper = type(layer) if isinstance(layer, QuantLayer) else quant_layer_for(layer)
    weight: torch.Tensor = layer.weight  # type: ignore[assignment]
    if wrapper is not None:
        weight = wrapper.output_channel_weight(layer)
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} without running statistics cannot be folded")
    if weight.shape[0] != bn.num_features:
        raise ValueError(
            f"cannot fold {type(bn).__name__}({bn.num_features}) into {type(layer).__name__} "
            f"with {weight.shape[0]} output channels"
        )
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
    factor = gamma * inv_std
    bias = layer.bias if getattr(layer, "bias", None) is not None else torch.zeros_like(inv_std)
    shape = [-1] + [1] * (weight.dim() - 1)
    weight.mul_(factor.reshape(shape).to(weight.dtype))
    new_bias = ((bias - bn.running_mean) * factor + beta).to(weight.dtype)
    if getattr(layer, "bias", None) is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=layer.weight.requires_grad)  # type: ignore[union-attr]
    else:
        layer.bias.copy_(new_bias)  # type: ignore[union-attr]


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Folds every BN that directly follows a foldable layer among its siblings; BN -> Identity.

    Siblings are taken in registration order (how conv-norm-activation modules, ResNet blocks and
    ``nn.Sequential`` register ``conv`` then ``bn``). Returns ``model``, changed in place.
    """
    previous: nn.Module | None = None
    for name, child in list(model.named_children()):
        if isinstance(child, _BatchNorm) and previous is not None:
            fold_bn(previous, child)
            setattr(model, name, nn.Identity())
            previous = None
        elif isinstance(child, foldable_types()) and not isinstance(child, ConvReLU2d):  # a BN after a ReLU
            previous = child
        else:
            fuse_conv_bn(child)
            previous = None
    return model
