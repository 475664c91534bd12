"""Quantized checkpoints and resumable run state, written atomically and read with weights_only.

A quantized checkpoint holds the state dict of the quantized detector (BN folded, quantizer state
included) and, in ``meta``, the validated quant config that rebuilds the same structure, so it
evaluates again later without re-calibration. Loading it is strict: a key mismatch is an error,
never a silently skipped layer (mmdet's and OpenPCDet's loaders only log mismatches).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "rdoq-plugins/quantized-detector/v1"


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Writes a temporary sibling, then renames it: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save``, atomically."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    """``Path.write_text``, atomically."""
    _atomic(path, lambda tmp: tmp.write_text(text))


def config_hash(*parts: Any) -> str:
    """A short hash of JSON-able parts (quant config, calibration options, checkpoint identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def checkpoint_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def load_strict(model: nn.Module, state_dict: dict[str, Any], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the checkpoint and a few keys."""
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(
            f"{what} does not match the model: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected keys "
            f"(e.g. {result.unexpected_keys[:3]})"
        )


def save_quantized(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Writes a quantized checkpoint that ``torch.load(weights_only=True)`` reads."""
    atomic_save({"state_dict": model.state_dict(), "meta": {**meta, "format": FORMAT}}, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint with weights_only=True; a clear error if it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a checkpoint dict")
    return ckpt if "state_dict" in ckpt else {"state_dict": ckpt, "meta": {}}


def is_quantized(ckpt: dict[str, Any]) -> bool:
    return ckpt.get("meta", {}).get("format") == FORMAT
