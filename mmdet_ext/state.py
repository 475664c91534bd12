"""Quantized checkpoints and resumable run state, written atomically and read with weights_only.

A quantized checkpoint holds the state dict of the quantized detector (BN folded, quantizer state
included) and, in ``meta``, the validated quant config that rebuilds the same structure, so it
evaluates again later without re-calibration. Loading it is strict: a key mismatch is an error,
never a silently skipped layer (mmdet's and OpenPCDet's loaders only log mismatches).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdoq_plugins.files import atomic_save, atomic_write_text, load_strict  # noqa: F401  (re-exported)

FORMAT = "rdoq-plugins/quantized-detector/v1"


def config_hash(*parts: Any) -> str:
    """A short hash of JSON-able parts (quant config, calibration options, checkpoint identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def checkpoint_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


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
