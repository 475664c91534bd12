"""Swapping a model's weighted layers for quantized wrappers, driven by the quant config.

Like torchao's ``quantize_(model, config, filter_fn)``: one in-place entry point. Each layer gets
the config's ``w_qconfig`` / ``a_qconfig`` unless an override names it (exact module name, or
``re:`` regex); an override of None leaves the layer FP. An override that names or matches no layer
the model has is an error (:func:`check_overrides`), raised before any layer is swapped.

Where activations are quantized follows ``a_qconfig.position`` (each layer's input, or each layer's
output), unless the caller decides per layer: an adapter that knows the architecture passes
``act_position`` as a function of the layer (an adapter's output placement).
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from enum import Enum
from typing import Any

from torch import nn

from rdoq_plugins.config.errors import ConfigError
from rdoq_plugins.config.placement import Placement
from rdoq_plugins.config.schema import LayerQConfig, QuantConfig, QuantizerConfig
from rdoq_plugins.modules.layer_map import quant_layer_for
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.registry import QUANTIZERS


class ActPosition(str, Enum):
    """Where the generic placement puts a layer's activation quantizer."""

    INPUT = "input"
    OUTPUT = "output"
    NONE = "none"


PositionOf = Callable[[str, nn.Module], ActPosition]  # (layer name, FP layer) -> where its quantizer goes


def resolve_position(config: QuantConfig, act_position: ActPosition | PositionOf | None) -> PositionOf:
    """The per-layer placement: the caller's, or ``a_qconfig.position`` applied to every layer.

    A caller that fixes input placement while the config asks for ``output`` cannot honour the
    config (an adapter without output placement): that is a :class:`ConfigError`.
    """
    wanted = config.a_qconfig.position or Placement.INPUT
    if act_position is None:
        fixed = ActPosition.OUTPUT if wanted is Placement.OUTPUT else ActPosition.INPUT
        return lambda name, module: fixed
    if isinstance(act_position, ActPosition):
        if wanted is Placement.OUTPUT and act_position is ActPosition.INPUT:
            raise ConfigError("a_qconfig.position", "this model's adapter quantizes layer inputs only", wanted.value,
                              Placement.INPUT.value)
        return lambda name, module, fixed=act_position: fixed
    return act_position


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


def quantizable_layers(model: nn.Module) -> list[str]:
    """The names of the layers of ``model`` that :func:`quantize_model` can wrap (a registered
    layer type, not the model itself), in registration order."""
    return [name for name, module in model.named_modules() if name and quant_layer_for(module) is not None]


def _override_text(value: LayerQConfig | None, config: QuantConfig) -> Any:
    """An override as the config wrote it: None, or the parts it sets (the keys that differ from
    the top-level ``w_qconfig`` / ``a_qconfig``, None for an FP part)."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for part, base in (("w_qconfig", config.w_qconfig), ("a_qconfig", config.a_qconfig)):
        q = getattr(value, part)
        if q is None:
            out[part] = None
        elif q != base:
            out[part] = {k: v for k, v in asdict(q).items() if v != getattr(base, k)}
    return out


def _closest(key: str, names: Sequence[str]) -> str:
    """The layer names an override most likely meant, for its error message."""
    if key.startswith("re:"):
        try:
            inside = [n for n in names if re.search(key[3:], n)]
        except re.error:
            inside = []
        if inside:
            more = f", ... ({len(inside)} in all)" if len(inside) > 3 else ""
            return f"the pattern must match whole names; it matches inside {', '.join(inside[:3])}{more}"
    close = difflib.get_close_matches(key.removeprefix("re:"), list(names), n=3, cutoff=0.6)
    if close:
        return "closest layers: " + ", ".join(close)
    more = f", ... ({len(names)} in all)" if len(names) > 3 else ""
    return "the model's layers: " + (", ".join(names[:3]) + more if names else "none")


def check_overrides(config: QuantConfig, names: Sequence[str]) -> None:
    """Raises :class:`ConfigError` on the first override of ``config`` whose exact name is not in
    ``names`` or whose ``re:`` pattern fully matches none of them; ``names``: the model's
    quantizable layers (:func:`quantizable_layers`). Such an override would change nothing, so the
    model quantized would not be the one the config asks for."""
    known = set(names)
    for key, value in config.overrides:
        if key.startswith("re:"):
            pattern = re.compile(key[3:])
            hit = any(pattern.fullmatch(n) for n in names)
        else:
            hit = key in known
        if not hit:
            kind = "matches" if key.startswith("re:") else "names"
            raise ConfigError(f"overrides.{key}", f"{kind} no quantizable layer of the model "
                              f"({_closest(key, names)})", _override_text(value, config))


def quantize_model(
    model: nn.Module,
    config: QuantConfig,
    act_position: ActPosition | PositionOf | None = None,
    include: Callable[[str, nn.Module], bool] | None = None,
    check: bool = True,
) -> dict[str, QuantLayer]:
    """Replaces every registered layer type in ``model`` (in place) by its quantized wrapper.

    Args:
        model: the FP model (BN already folded, see :func:`fuse_conv_bn`).
        config: the validated quant config.
        act_position: whether each layer quantizes its input, its output, or no activation: one
            choice for all, a function of ``(name, layer)``, or None to follow ``a_qconfig.position``
            (:func:`resolve_position`).
        include: ``(name, module) -> bool``; layers it rejects stay FP.
        check: first check that every override names or matches a quantizable layer of the model
            (:func:`check_overrides`; layers ``include`` rejects count); off to rebuild a saved
            quantized model from its stored config, whatever overrides that config carries.

    Returns:
        The wrapped layers by module name. Quantizers start disabled: calibrate, then switch on.
    """
    position_of = resolve_position(config, act_position)
    if check:
        check_overrides(config, quantizable_layers(model))
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
        position = position_of(name, module)
        if a_cfg is not None and position is ActPosition.INPUT:
            in_q = build_quantizer(a_cfg, _channels(module, "in"), is_weight=False)
        elif a_cfg is not None and position is ActPosition.OUTPUT:
            out_q = build_quantizer(a_cfg, _channels(module, "out"), is_weight=False)
        new = wrapper.from_float(module, weight_q, in_q, out_q)
        set_submodule(model, name, new)
        wrapped[name] = new
    return wrapped
