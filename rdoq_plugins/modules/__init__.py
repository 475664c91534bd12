"""Quantized layers, the layer extension point, BN folding and the quantization switch."""
from rdoq_plugins.modules.fold_bn import fold_bn, fuse_conv_bn
from rdoq_plugins.modules.fused import ConvReLU2d, QuantConvReLU2d, fuse_relu
from rdoq_plugins.modules.layer_map import quant_layer_for, register_quant_layer
from rdoq_plugins.modules.level_quantizer import (
    LevelCursor,
    LevelQuantizer,
    at_levels,
    cursor_levels,
    level_cursors,
    split_levels,
)
from rdoq_plugins.modules.quant_layer import (
    QuantAct,
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantLayer,
    QuantLinear,
)
from rdoq_plugins.modules.quantize_model import (
    ActPosition,
    build_quantizer,
    check_overrides,
    quantizable_layers,
    quantize_model,
    resolve_position,
)
from rdoq_plugins.modules.switch import quantizers, set_observer_state, set_quant_state

__all__ = [
    "ActPosition",
    "ConvReLU2d",
    "LevelCursor",
    "LevelQuantizer",
    "QuantAct",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantConvReLU2d",
    "QuantLayer",
    "QuantLinear",
    "at_levels",
    "build_quantizer",
    "check_overrides",
    "cursor_levels",
    "fold_bn",
    "fuse_conv_bn",
    "fuse_relu",
    "level_cursors",
    "quant_layer_for",
    "quantizable_layers",
    "quantize_model",
    "quantizers",
    "register_quant_layer",
    "resolve_position",
    "set_observer_state",
    "set_quant_state",
    "split_levels",
]
