"""Tracing a quantized model for ONNX: every quantizer becomes a marker node the rewriter replaces.

While :func:`marked` is active, each quantized layer runs as before (same values) but leaves, in
a TorchScript trace, one custom node per quantizer: ``rdoq::Act`` (on the unquantized input),
``rdoq::W`` (on the weight), and to probe a layer call ``rdoq::In`` / ``rdoq::Out`` (on its input
and output), each with a
``key`` attribute that indexes :class:`Marks`, which records the exact parameters of that call
(e.g. the level a per-level head quantizer ran on). :mod:`rdoq_plugins.export.onnx_qdq` turns the
markers into ``QuantizeLinear`` / ``DequantizeLinear`` nodes (ONNX operators, opset 21).
"""
from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.errors import InputError
from rdoq_plugins.export.integers import LayerIntegers, QuantParams, quant_params, weight_integers
from rdoq_plugins.modules.level_quantizer import LevelQuantizer
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize


@dataclass
class Marks:
    """What the trace recorded: per marker key, its parameters; per layer, its keys in call order."""

    acts: dict[str, QuantParams] = field(default_factory=dict)
    weights: dict[str, LayerIntegers] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # output key -> layer name
    shapes: dict[str, list[int]] = field(default_factory=dict)  # output key -> traced shape
    in_shapes: dict[str, list[int]] = field(default_factory=dict)  # act key -> traced input shape
    layer_keys: dict[str, list[str]] = field(default_factory=dict)  # layer -> act / weight / output keys


_ACTIVE: dict[str, Any] = {}  # marker key -> the callable the marker stands for during the trace


class _Mark(torch.autograd.Function):
    """Runs ``_ACTIVE[key](x)`` in PyTorch; exports as one ``rdoq::<kind>`` node on ``x``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, kind: str, key: str) -> Tensor:  # type: ignore[override]
        state = torch._C._get_tracing_state()  # the quantizer's arithmetic stays out of the trace
        torch._C._set_tracing_state(None)
        try:
            return _ACTIVE[key](x)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g: Any, x: Any, kind: str, key: str) -> Any:
        out = g.op(f"rdoq::{kind}", x, key_s=key)
        out.setType(x.type())  # same shape and type: the exporter's shape-dependent symbolics need it
        return out


def _act_quantizer(q: FakeQuantize | LevelQuantizer) -> tuple[FakeQuantize, str]:
    """The quantizer that runs now (a per-level one picks its cursor's level) and its key suffix."""
    if isinstance(q, LevelQuantizer):
        level = q.cursor.level
        if level is None:
            raise RuntimeError("a per-level input quantizer ran outside its head's level loop")
        return q.levels[level], f"input_quantizer.levels.{level}"  # type: ignore[return-value]
    return q, "input_quantizer"


def _marked_forward(name: str, marks: Marks, probe: bool) -> Any:
    def forward(self: QuantLayer, x: Tensor) -> Tensor:
        keys = marks.layer_keys.setdefault(name, [])
        call = f"{name}#{sum(k.startswith(name + '#') for k in marks.outputs)}"
        if probe:  # the layer's own input, for the parity check of the layer alone
            _ACTIVE[call + "<"] = lambda t: t.clone()
            x = _Mark.apply(x, "In", call + "<")
        if self.input_quantizer is not None:
            q, suffix = _act_quantizer(self.input_quantizer)
            key = f"{name}.{suffix}"
            if bool(q.fake_quant_enabled):
                marks.acts[key] = quant_params(q, x)
                marks.in_shapes[key] = [int(d) for d in x.shape]
                _ACTIVE[key] = q.quantize
                x = _Mark.apply(x, "Act", key)
                keys.append(key)
        weight = self.quantized_weight()
        if self.weight_quantizer is not None and bool(self.weight_quantizer.fake_quant_enabled):
            key = f"{name}.weight"
            marks.weights[key] = weight_integers(self.weight_quantizer, self.weight)  # type: ignore[arg-type]
            _ACTIVE[key] = lambda w, w_hat=weight: w_hat
            weight = _Mark.apply(weight, "W", key)
            if key not in keys:
                keys.append(key)
        y = self.forward_with_weight(x, weight)
        if self.output_quantizer is not None and bool(self.output_quantizer.fake_quant_enabled):
            key = f"{name}.output_quantizer"
            marks.acts[key] = quant_params(self.output_quantizer, y)
            marks.in_shapes[key] = [int(d) for d in y.shape]
            _ACTIVE[key] = self.output_quantizer.quantize
            y = _Mark.apply(y, "Act", key)
            keys.append(key)
        if probe:
            marks.outputs[call] = name
            marks.shapes[call] = [int(d) for d in y.shape]
            _ACTIVE[call] = lambda t: t.clone()
            y = _Mark.apply(y, "Out", call)
        return y

    return forward


def check_exportable(model: nn.Module, layers: dict[str, QuantLayer]) -> None:
    """Every quantizer that is on belongs to a quantized layer (its input, weight or output), since
    only those leave markers; another one (e.g. a ResNet block's output quantizer under
    ``a_qconfig.position: output``) would be left out of the export silently, so it is an error."""
    owned: set[int] = set()
    for layer in layers.values():
        for q in (layer.input_quantizer, layer.weight_quantizer, layer.output_quantizer):
            if q is not None:
                owned.update(id(m) for m in q.modules())
    stray = [n for n, m in model.named_modules()
             if isinstance(m, FakeQuantize) and bool(m.fake_quant_enabled) and id(m) not in owned]
    if stray:
        raise InputError(f"cannot export quantizer {stray[0]} ({len(stray)} in all): only the input, weight and "
                         "output quantizers of quantized layers are exported (a_qconfig.position: output puts "
                         "some on blocks; export supports position: input)")


@contextmanager
def marked(model: nn.Module, probe: bool = True) -> Iterator[Marks]:
    """Patches every quantized layer of ``model`` to leave markers (see the module docstring)."""
    marks = Marks()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, QuantLayer)}
    check_exportable(model, layers)
    for name, layer in layers.items():
        layer.forward = types.MethodType(_marked_forward(name, marks, probe), layer)  # type: ignore[method-assign]
    try:
        yield marks
    finally:
        for layer in layers.values():
            layer.__dict__.pop("forward", None)
        _ACTIVE.clear()
