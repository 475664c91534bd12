"""Quantized layers, the layer extension point, BN folding and the quantization switch."""
from rdoq_plugins.modules.fold_bn import fold_bn, fuse_conv_bn
from rdoq_plugins.modules.layer_map import quant_layer_for, register_quant_layer
from rdoq_plugins.modules.quant_layer import (
    QuantAct,
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantLayer,
    QuantLinear,
)
from rdoq_plugins.modules.quantize_model import ActPosition, build_quantizer, quantize_model
from rdoq_plugins.modules.switch import quantizers, set_observer_state, set_quant_state

__all__ = [
    "ActPosition",
    "QuantAct",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantLayer",
    "QuantLinear",
    "build_quantizer",
    "fold_bn",
    "fuse_conv_bn",
    "quant_layer_for",
    "quantize_model",
    "quantizers",
    "register_quant_layer",
    "set_observer_state",
    "set_quant_state",
]
