"""Quantized checkpoints: format, identity, safe reading, strict loading and saving.

A quantized checkpoint holds the state dict of the quantized detector (BN folded, quantizer state
included) and, in ``meta``, the validated quant config that rebuilds the same structure, so it
evaluates again without re-calibration. Files are read with ``torch.load(weights_only=True)`` and
written atomically; loading is strict, so a key mismatch is an error that names keys, never a
silently skipped layer.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.errors import InputError
from rdoq_plugins.files import atomic_save, load_strict

FORMAT = "rdoq-plugins/quantized-detector/v1"
SPARSE_FORMAT = "rdoq-plugins/quantized-sparse-detector/v1"
FORMATS = (FORMAT, SPARSE_FORMAT)
WEIGHT_KEYS = ("state_dict", "model_state")  # where detection frameworks keep a checkpoint's weights


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


def checkpoint_identity(path: Path) -> dict[str, Any]:
    """Path, size and modification time: enough to tell a replaced checkpoint file."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def _refusal(err: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, without its advice to unpickle fully: the
    reason after ``WeightsUnpickler error:``, or the message's first line."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = " ".join(text.split(marker, 1)[1].split())
        reason = reason.split(" Please use ", 1)[0].split(" Check the documentation", 1)[0]
    else:
        lines = text.strip().splitlines()
        reason = lines[0] if lines else type(err).__name__
    return reason[:200]


def read_checkpoint(path: Path, trust: bool = False, trust_hint: str = "") -> dict[str, Any]:
    """The checkpoint dict, read with ``weights_only=True`` unless ``trust`` (the user's flag for a
    file they trust, which ``trust_hint`` names in the refusal); a missing, truncated, corrupt or
    refused file is a :class:`CheckpointError` naming it (never torch's advice to unpickle fully:
    only the user's own flag may do that)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        reason = _refusal(err)
        if "Unsupported global" in reason:  # a real pickle holding an object of some class
            hint = f"; {trust_hint}" if trust_hint else ""
            raise CheckpointError(f"{path}: not a checkpoint of plain tensors and containers ({reason}){hint}"
                                  ) from None
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: corrupt or not a checkpoint "
                              f"(unpickling failed: {reason})") from None
    except PermissionError:
        raise CheckpointError(f"{path}: cannot be read (permission denied)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: truncated or corrupt "
                              f"({type(err).__name__}{': ' + detail if detail else ''})") from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001  (random bytes can fail anywhere in the unpickler)
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: corrupt or not a checkpoint "
                              f"({type(err).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint dict (got {type(ckpt).__name__})")
    return ckpt


def state_dict_of(ckpt: Mapping[str, Any], path: Path) -> dict[str, Tensor]:
    """The model weights of a checkpoint: its ``state_dict`` or ``model_state`` entry, or the
    checkpoint itself when it is a bare state dict."""
    for key in WEIGHT_KEYS:
        if key in ckpt:
            state = ckpt[key]
            if not isinstance(state, Mapping):
                raise CheckpointError(f"{path}: {key!r} is not a state dict (got {type(state).__name__})")
            return dict(state)
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return dict(ckpt)
    raise CheckpointError(f"{path} holds no model weights: expected one of {', '.join(WEIGHT_KEYS)}; found "
                          f"{sorted(map(str, ckpt))[:8]}")


def check_finite(state_dict: Mapping[str, Any], path: Path, show: int = 3) -> None:
    """Raises :class:`CheckpointError` naming the first tensors of ``state_dict`` that hold NaN or
    infinite values (a diverged training run, a broken conversion): calibration and
    reconstruction would only spread them."""
    bad: list[str] = []
    count = 0
    for key, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            count += 1
            if len(bad) < show:
                nan = int(torch.isnan(value).sum())
                inf = int(torch.isinf(value).sum())
                bad.append(f"{key} ({nan} NaN, {inf} inf of {value.numel()})")
    if bad:
        more = f" and {count - len(bad)} more" if count > len(bad) else ""
        raise CheckpointError(f"{path}: {count} tensors hold non-finite values: {', '.join(bad)}{more}")


def quantized_format(ckpt: Mapping[str, Any]) -> str | None:
    """The quantized-checkpoint format of ``ckpt``, None for an FP checkpoint."""
    meta = ckpt.get("meta")
    fmt = meta.get("format") if isinstance(meta, Mapping) else None
    return fmt if fmt in FORMATS else None


def is_quantized(ckpt: Mapping[str, Any]) -> bool:
    return quantized_format(ckpt) is not None


def save_quantized(model: nn.Module, path: Path, quant_config: Mapping[str, Any], meta: Mapping[str, Any],
                   fmt: str = FORMAT) -> None:
    """Writes ``{"state_dict", "meta": {**meta, "quant", "format"}}`` (CPU tensors) atomically."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; allowed: {', '.join(FORMATS)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"state_dict": state, "meta": {**meta, "quant": dict(quant_config), "format": fmt}}, path)


def load_quantized(ckpt: Mapping[str, Any], path: Path, build: Callable[[Mapping[str, Any]], nn.Module],
                   fmt: str = FORMAT) -> nn.Module:
    """The quantized model of a quantized checkpoint: ``build(stored quant config)`` makes the
    quantized structure (no weights needed), then the state dict is loaded strictly."""
    found = quantized_format(ckpt)
    if found != fmt:
        raise CheckpointError(f"{path} is not a quantized checkpoint in the {fmt} format (found {found!r})")
    model = build(ckpt["meta"]["quant"])
    load_strict(model, ckpt["state_dict"], f"quantized checkpoint {path}")
    return model
