"""The extension point: which quantized wrapper replaces which FP layer type.

Adapters register their own layer types (e.g. the convolutions of a sparse convolution library)
without touching the core::

    @register_quant_layer(sparse.SubMConv3d)
    class QuantSubMConv3d(QuantLayer, sparse.SubMConv3d):
        def forward_with_weight(self, x, weight): ...
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rdoq_plugins.modules.fused import ConvReLU2d, QuantConvReLU2d
from rdoq_plugins.modules.quant_layer import (
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantLayer,
    QuantLinear,
)

_QUANT_LAYERS: dict[type[nn.Module], type[QuantLayer]] = {
    nn.Conv1d: QuantConv1d,
    nn.Conv2d: QuantConv2d,
    nn.Conv3d: QuantConv3d,
    nn.Linear: QuantLinear,
    ConvReLU2d: QuantConvReLU2d,
}


def register_quant_layer(fp_type: type[nn.Module]) -> Callable[[type[QuantLayer]], type[QuantLayer]]:
    """Class decorator: ``fp_type`` layers are replaced by the decorated wrapper."""

    def add(wrapper: type[QuantLayer]) -> type[QuantLayer]:
        if not issubclass(wrapper, QuantLayer):
            raise TypeError(f"{wrapper.__name__} must subclass QuantLayer")
        _QUANT_LAYERS[fp_type] = wrapper
        return wrapper

    return add


def quant_layer_for(module: nn.Module) -> type[QuantLayer] | None:
    """The wrapper class for ``module`` (exact type first, then its bases), or None."""
    if isinstance(module, QuantLayer):
        return None
    for cls in type(module).__mro__:
        if cls in _QUANT_LAYERS:
            return _QUANT_LAYERS[cls]
    return None


def foldable_types() -> tuple[type[nn.Module], ...]:
    """Layer types whose output channels sit on weight axis 0, so a following BN folds in."""
    return tuple(t for t, w in _QUANT_LAYERS.items() if w.weight_out_axis == 0)
