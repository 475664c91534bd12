"""One input quantizer per pyramid level for layers that every level of a feature pyramid shares.

Dense detection heads (RPN; RetinaNet, Lin et al., "Focal Loss for Dense Object Detection", ICCV
2017) run the same convolutions on every level of a feature pyramid (Lin et al., "Feature Pyramid
Networks for Object Detection", CVPR 2017). The levels' activations differ in range by several
times (on the bundled RetinaNet, RetinaHead's first conv reads values up to 17 on P3 and up to 3.6
on P7), so one 4-bit step for all levels zeroes most of the coarse levels. An integer kernel runs
each level as a call of its own and can requantize each level's input with its own scale while the
weights stay shared; :class:`LevelQuantizer` models that: it holds one quantizer per level and uses
the one of the level its :class:`LevelCursor` names. The framework adapter moves the cursor (the
head's per-level loop); reconstruction records it with each cached call and sets it on replay.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize


class LevelCursor:
    """The pyramid level one head's layers are running on (None: outside the head's level loop).

    A plain object, not a module: the head and its :class:`LevelQuantizer` s share one, and a
    ``deepcopy`` of the model shares the copy the same way.
    """

    def __init__(self, num_levels: int) -> None:
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.num_levels = num_levels
        self.level: int | None = None

    def step(self) -> int:
        """Moves to the next level (the first one after :meth:`reset`) and returns it."""
        level = 0 if self.level is None else self.level + 1
        if level >= self.num_levels:
            raise RuntimeError(f"the head ran more than its {self.num_levels} pyramid levels in one pass")
        self.level = level
        return level

    def reset(self) -> None:
        self.level = None


class LevelQuantizer(nn.Module):
    """``num_levels`` independent copies of an input quantizer, picked by a :class:`LevelCursor`.

    Each copy observes, calibrates and learns (LSQ, QDrop) only its own level's activations; the
    state-dict keys are ``levels.<i>.*``.
    """

    def __init__(self, quantizer: FakeQuantize, cursor: LevelCursor) -> None:
        super().__init__()
        self.levels = nn.ModuleList(copy.deepcopy(quantizer) for _ in range(cursor.num_levels))
        self.cursor = cursor

    def forward(self, x: Tensor) -> Tensor:
        level = self.cursor.level
        if level is None:
            raise RuntimeError("a per-level input quantizer ran outside its head's level loop (no level is set)")
        return self.levels[level](x)


def split_levels(module: nn.Module, cursor: LevelCursor) -> list[str]:
    """Gives every quantized layer under ``module`` one input quantizer per level of ``cursor``
    (before calibration); returns the names of the layers changed, relative to ``module``."""
    names = []
    for name, layer in module.named_modules():
        if isinstance(layer, QuantLayer) and isinstance(layer.input_quantizer, FakeQuantize):
            layer.input_quantizer = LevelQuantizer(layer.input_quantizer, cursor)
            names.append(name)
    return names


def level_cursors(module: nn.Module) -> list[LevelCursor]:
    """The distinct cursors of the :class:`LevelQuantizer` s under ``module``, in module order."""
    seen: dict[int, LevelCursor] = {}
    for m in module.modules():
        if isinstance(m, LevelQuantizer):
            seen.setdefault(id(m.cursor), m.cursor)
    return list(seen.values())


def cursor_levels(cursors: Sequence[LevelCursor]) -> tuple[int | None, ...]:
    """The current level of each cursor (what a cached call records)."""
    return tuple(c.level for c in cursors)


@contextmanager
def at_levels(cursors: Sequence[LevelCursor], levels: Sequence[int | None]) -> Iterator[None]:
    """Sets each cursor to its recorded level for a replayed call, and restores them after."""
    if len(cursors) != len(levels):
        raise ValueError(f"{len(levels)} recorded levels for {len(cursors)} cursors")
    saved = cursor_levels(cursors)
    for c, level in zip(cursors, levels):
        c.level = level
    try:
        yield
    finally:
        for c, level in zip(cursors, saved):
            c.level = level
