"""No NaN escapes quantization: non-finite scales, ranges or trained tensors stop the run, naming
the layer.

A NaN activation makes its observer's range NaN, and with it the quantizer's scale and every later
output; an infinite loss during reconstruction makes the trained rounding and steps NaN. Without a
check the run ends "successfully" with a model that detects nothing. The workflow checks the
quantizers after calibration and each unit after its reconstruction.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from rdoq_plugins.errors import NonFiniteError
from rdoq_plugins.quant.fake_quantize import FakeQuantize

_QUANTIZER = re.compile(r"^(?:(.*)\.)?(weight|input|output)_quantizer(\..*)?$")


def bad_values(t: Tensor) -> int:
    """How many values of ``t`` are NaN or infinite (0 for integer tensors)."""
    if not t.is_floating_point():
        return 0
    return int((~torch.isfinite(t.detach())).sum())


def _layer(name: str) -> str:
    """``layer backbone.conv1 (input quantizer)`` for ``backbone.conv1.input_quantizer``."""
    match = _QUANTIZER.match(name)
    if match is None:
        return f"quantizer {name}"
    layer, kind, rest = match.groups()
    return f"layer {layer or '(root)'} ({kind} quantizer{rest or ''})"


def check_quantizers(model: nn.Module, where: str, prefix: str = "") -> None:
    """Raises :class:`NonFiniteError` naming the first quantizer under ``model`` whose scale, zero
    point or recorded range holds NaN or infinity (``prefix``: the module name of ``model``)."""
    for name, q in model.named_modules():
        if not isinstance(q, FakeQuantize):
            continue
        tensors = {"scale": q.scale, "zero point": q.zero_point}
        obs = getattr(q, "observer", None)
        for key in ("lo", "hi"):
            if isinstance(getattr(obs, key, None), Tensor):
                tensors[f"observed {'minimum' if key == 'lo' else 'maximum'}"] = getattr(obs, key)
        for what, t in tensors.items():
            bad = bad_values(t)
            if bad:
                full = f"{prefix}.{name}" if prefix and name else (prefix or name)
                raise NonFiniteError(f"{where}: {_layer(full)} has {bad} non-finite {what} values "
                                     f"(of {t.numel()}): its inputs or weights hold NaN or infinity")


def check_parameters(model: nn.Module, where: str, prefix: str = "") -> None:
    """Raises :class:`NonFiniteError` naming the first parameter of ``model`` with NaN or infinity."""
    for name, p in model.named_parameters():
        bad = bad_values(p)
        if bad:
            full = f"{prefix}.{name}" if prefix else name
            raise NonFiniteError(f"{where}: {full} holds {bad} non-finite values (of {p.numel()})")
