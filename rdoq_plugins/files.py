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


def load_strict(model: nn.Module, state_dict: dict[str, Any], what: str) -> None:
    """``load_state_dict`` that fails on any missing, unexpected or reshaped key, naming a few."""
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shapes that differ (quantizer state resizes itself first)
        mismatches = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        if not mismatches:
            raise
        raise KeyError(f"{what} does not match the model: {len(mismatches)} keys with other shapes "
                       f"(e.g. {mismatches[0].removeprefix('size mismatch for ')})") from None
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(
            f"{what} does not match the model: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected keys "
            f"(e.g. {result.unexpected_keys[:3]})"
        )
