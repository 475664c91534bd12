"""Swapping a model's weighted layers for quantized wrappers, driven by the quant config.

Like torchao's ``quantize_(model, config, filter_fn)``: one in-place entry point. Each layer gets
the config's ``w_qconfig`` / ``a_qconfig`` unless an override names it (exact module name, or
``re:`` regex); an override of None leaves the layer FP.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from torch import nn

from rdoq_plugins.config.schema import QuantConfig, QuantizerConfig
from rdoq_plugins.modules.layer_map import quant_layer_for
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.registry import QUANTIZERS


class ActPosition(str, Enum):
    """Where the generic placement puts a layer's activation quantizer."""

    INPUT = "input"
    OUTPUT = "output"
    NONE = "none"


def build_quantizer(cfg: QuantizerConfig, num_channels: int, is_weight: bool) -> FakeQuantize:
    """A fake quantizer from one ``w_qconfig`` / ``a_qconfig`` entry."""
    quantizer: FakeQuantize = QUANTIZERS.build(
        cfg.quantizer,
        observer=cfg.observer,
        bit=cfg.bit,
        symmetric=cfg.symmetric,
        granularity=cfg.granularity,
        num_channels=num_channels,
        is_weight=is_weight,
    )
    return quantizer


def _channels(module: nn.Module, which: str) -> int:
    names = ("in_channels", "in_features") if which == "in" else ("out_channels", "out_features")
    for name in names:
        if hasattr(module, name):
            return int(getattr(module, name))
    raise ValueError(f"{type(module).__name__} has none of {names}")


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replaces the submodule called ``name`` (dotted path) by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_model(
    model: nn.Module,
    config: QuantConfig,
    act_position: ActPosition = ActPosition.INPUT,
    include: Callable[[str, nn.Module], bool] | None = None,
) -> dict[str, QuantLayer]:
    """Replaces every registered layer type in ``model`` (in place) by its quantized wrapper.

    Args:
        model: the FP model (BN already folded, see :func:`fuse_conv_bn`).
        config: the validated quant config.
        act_position: whether each layer quantizes its input, its output, or no activation.
        include: ``(name, module) -> bool``; layers it rejects stay FP.

    Returns:
        The wrapped layers by module name. Quantizers start disabled: calibrate, then switch on.
    """
    wrapped: dict[str, QuantLayer] = {}
    for name, module in list(model.named_modules()):
        wrapper = quant_layer_for(module)
        if wrapper is None or not name or (include is not None and not include(name, module)):
            continue
        layer_cfg = config.for_layer(name)
        if layer_cfg is None:
            continue
        w_cfg, a_cfg = layer_cfg.w_qconfig, layer_cfg.a_qconfig
        weight_q = None
        if w_cfg is not None:
            weight_q = build_quantizer(w_cfg, module.weight.shape[max(w_cfg.ch_axis, 0)], is_weight=True)
        in_q = out_q = None
        if a_cfg is not None and act_position is ActPosition.INPUT:
            in_q = build_quantizer(a_cfg, _channels(module, "in"), is_weight=False)
        elif a_cfg is not None and act_position is ActPosition.OUTPUT:
            out_q = build_quantizer(a_cfg, _channels(module, "out"), is_weight=False)
        new = wrapper.from_float(module, weight_q, in_q, out_q)
        set_submodule(model, name, new)
        wrapped[name] = new
    return wrapped
