"""Where activations are quantized: ``a_qconfig.position``.

``input`` quantizes every quantized layer's input. ``output`` puts the quantizers where the official
QDrop code does (Wei et al., ICLR 2022): on the outputs that later layers read (in a ResNet block
after conv1 + ReLU, conv2 + ReLU and the residual add + ReLU), so each step is learned by the
reconstruction unit that produces the tensor. The adapter knows the architecture and decides the
exact places; the core alone puts one quantizer on each layer's output.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from rdoq_plugins.config.errors import ConfigError, get_choice, join


class Placement(str, Enum):
    """The ``a_qconfig.position`` values."""

    INPUT = "input"
    OUTPUT = "output"


def read_position(data: Mapping[str, Any], path: str, base: Placement | None, weight: bool) -> Placement | None:
    """``position`` of a quantizer mapping at ``path``: read in the top-level ``a_qconfig`` only.
    Weights have none; an override's ``a_qconfig`` keeps the top-level one (a null value there is
    accepted and changes nothing)."""
    if weight or path != "a_qconfig":
        if data.get("position") is not None:
            problem = "weights have no position" if weight else "set it in the top-level a_qconfig (one for the model)"
            raise ConfigError(join(path, "position"), problem, data["position"])
        return base
    default = (base or Placement.INPUT).value
    return Placement(get_choice(data, "position", default, path, [m.value for m in Placement]))
