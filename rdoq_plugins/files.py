"""Writing and loading run files safely: atomic writes, and strict state-dict loading.

A crash never leaves half a file (write a sibling, then rename), and a checkpoint whose keys do not
match the model is an error that names a few keys, never a silently skipped layer (the detection
frameworks' own loaders only log mismatches).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Writes a temporary sibling, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save``, atomically."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    """``Path.write_text``, atomically."""
    _atomic(path, lambda tmp: tmp.write_text(text))


class StateDictMismatch(KeyError):
    """A state dict whose keys or shapes do not match the model (e.g. another detector's
    checkpoint); the message names the first mismatches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _shape(text: str) -> str:
    """``torch.Size([64, 128, 1, 1])`` -> ``[64, 128, 1, 1]``."""
    return text.strip().removeprefix("torch.Size(").removesuffix(")").removesuffix(".").removesuffix(")")


def _shape_mismatches(message: str) -> list[str]:
    """``key: [stored shape] given, [model shape] in the model`` for each size-mismatch
    line of torch's ``load_state_dict`` error."""
    out = []
    for line in message.splitlines():
        line = line.strip()
        if not line.startswith("size mismatch for "):
            continue
        key, _, rest = line.removeprefix("size mismatch for ").partition(": ")
        if "from checkpoint, the shape in current model is" in rest:
            stored, _, current = rest.partition("from checkpoint, the shape in current model is")
            stored = stored.removeprefix("copying a param with shape").strip()
            out.append(f"{key}: {_shape(stored)} given, {_shape(current)} in the model")
        else:
            out.append(f"{key} ({rest})")
    return out


def load_strict(model: nn.Module, state_dict: dict[str, Any], what: str, show: int = 3) -> None:
    """``load_state_dict`` that fails on any missing, unexpected or reshaped key with a
    :class:`StateDictMismatch` naming the first ``show`` of each kind."""
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shapes that differ (quantizer state resizes itself first)
        reshaped = _shape_mismatches(str(err))
        if not reshaped:
            raise
        own = set(model.state_dict())
        missing = [k for k in model.state_dict() if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
    else:
        reshaped, missing, unexpected = [], list(result.missing_keys), list(result.unexpected_keys)
    if not (reshaped or missing or unexpected):
        return
    parts = []
    if reshaped:
        parts.append(f"{len(reshaped)} keys with other shapes (e.g. {'; '.join(reshaped[:show])})")
    if missing or not reshaped:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:show]})")
    if unexpected or not reshaped:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:show]})")
    raise StateDictMismatch(f"{what} does not match the model: {', '.join(parts)}")
