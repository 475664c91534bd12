"""``weights.packed``: a quantized model with every quantized weight at its units' real bit widths.

Layout (little-endian)::

    b"RDOQPK02" | u64 header length H | H bytes: header (:mod:`.packed_header`) | data

The header lists one entry per state-dict key, in data order (:func:`read_header` gives each its
byte range in the data):

* ``{"key", "packed": true, "shape", "offset", "nbytes"}``: a quantized weight, as the codes
  ``q - q_min`` of :func:`rdoq_plugins.export.integers.weight_integers`, unit after unit along the
  quantizer's channel axis (:func:`rdoq_plugins.granularity.channel_view` order), each at its unit's
  bits (:mod:`rdoq_plugins.export.bitpack`). Its scales, zero points and bit map are the raw entries
  ``<layer>.weight_quantizer.{scale,zero_point,bits}``.
* ``{"key", "dtype", "store", "shape", "offset", "nbytes"}``: any other tensor (biases, FP layers,
  activation steps, switches), integers stored in the narrowest numpy dtype that holds them
  (``store``), restored to the torch ``dtype``.

What is stored is :func:`deployed_state_dict`: the model as it computes. Quantized weights are
their fake-quantized values; AdaRound quantizers round to nearest (hard rounding is already in the
integers); observer statistics (calibration-only state) are left out. :func:`load_packed` rebuilds
that state dict bit for bit in a model of the same structure.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdoq_plugins.export.bitpack import pack_codes, unpack_codes
from rdoq_plugins.export.integers import LayerIntegers, dequantize, quant_params, weight_integers
from rdoq_plugins.export.packed_header import FORMAT, MAGIC, MAGIC_V1, decode_header, encode_header
from rdoq_plugins.granularity import channel_view, unit_index
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize

_INT_STORES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)


def quantized_layers(model: nn.Module) -> dict[str, QuantLayer]:
    """The layers whose weight is fake-quantized, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLayer) and m.weight_quantizer is not None
            and bool(m.weight_quantizer.fake_quant_enabled)}


def _is_observer_key(key: str) -> bool:
    return ".observer." in f".{key}"


@torch.no_grad()
def deployed_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's state as it computes (see the module docstring), on CPU."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not _is_observer_key(k)}
    for name, layer in quantized_layers(model).items():
        state[f"{name}.weight"] = layer.quantized_weight().detach().cpu().clone()
        q = layer.weight_quantizer
        if isinstance(q, AdaRoundFakeQuantize):
            state[f"{name}.weight_quantizer.alpha"] = torch.zeros(0)
            state[f"{name}.weight_quantizer.rounding_state"] = torch.tensor(0, dtype=torch.uint8)
    return state


def _unit_codes(ints: LayerIntegers) -> tuple[list[np.ndarray], list[int]]:
    """The codes ``q - q_min`` of each unit (rows of the channel view), with the unit's bits."""
    p = ints.params
    rows = channel_view(ints.q, p.granularity)
    units = unit_index(p.granularity, rows.shape[0])
    q_min, _ = p.bounds()
    codes, bits = [], []
    for u in range(p.bits.numel()):
        codes.append((rows[units == u] - q_min[u]).numpy().ravel())
        bits.append(int(p.bits[u]))
    return codes, bits


def _store_dtype(t: Tensor) -> np.dtype:
    if t.is_floating_point() or t.numel() == 0 or t.dtype == torch.bool:
        return t.numpy().dtype
    lo, hi = int(t.min()), int(t.max())
    for dt in _INT_STORES:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def write_packed(model: nn.Module, path: Path, meta: dict[str, Any] | None = None) -> dict[str, int]:
    """Writes ``weights.packed`` for ``model``; returns ``{"bytes", "header_bytes", "weight_bits"}``."""
    layers = quantized_layers(model)
    state = deployed_state_dict(model)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    offset = weight_bits = 0
    for key, value in state.items():
        layer_name = key[: -len(".weight")] if key.endswith(".weight") else None
        if layer_name in layers:
            layer = layers[layer_name]
            ints = weight_integers(layer.weight_quantizer, layer.weight)  # type: ignore[arg-type]
            codes, bits = _unit_codes(ints)
            blob = pack_codes(codes, bits)
            weight_bits += sum(c.size * b for c, b in zip(codes, bits))
            entries.append({"key": key, "packed": True, "shape": list(value.shape), "offset": offset,
                            "nbytes": len(blob)})
        else:
            store = _store_dtype(value)
            blob = value.numpy().astype(store).tobytes()
            entries.append({"key": key, "dtype": str(value.dtype).removeprefix("torch."), "store": store.str,
                            "shape": list(value.shape), "offset": offset, "nbytes": len(blob)})
        blobs.append(blob)
        offset += len(blob)
    header = encode_header(entries, meta or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        for blob in blobs:
            f.write(blob)
    tmp.replace(path)
    return {"bytes": path.stat().st_size, "header_bytes": len(MAGIC) + 8 + len(header), "weight_bits": weight_bits}


def read_header(path: Path) -> tuple[dict[str, Any], memoryview]:
    """The header and the data section of a packed file."""
    raw = memoryview(path.read_bytes())
    if bytes(raw[:8]) not in (MAGIC, MAGIC_V1):
        raise ValueError(f"{path} is not a {FORMAT} file (bad magic)")
    (length,) = struct.unpack("<Q", raw[8:16])
    try:
        header = decode_header(bytes(raw[:8]), bytes(raw[16:16 + length]))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return header, raw[16 + length:]


@torch.no_grad()
def load_packed(model: nn.Module, path: Path) -> dict[str, Any]:
    """Loads ``path`` into ``model`` (the quantized structure, e.g. built from the stored quant config);
    afterwards ``deployed_state_dict(model)`` equals the writer's bit for bit. Returns the meta."""
    header, data = read_header(path)
    raw: dict[str, Tensor] = {}
    packed: dict[str, dict[str, Any]] = {}
    for e in header["entries"]:
        chunk = data[e["offset"]:e["offset"] + e["nbytes"]]
        if e.get("packed"):
            packed[e["key"]] = {**e, "blob": bytes(chunk)}
            continue
        arr = np.frombuffer(chunk, dtype=np.dtype(e["store"])).reshape(e["shape"])
        raw[e["key"]] = torch.from_numpy(arr.copy()).to(getattr(torch, e["dtype"]))
    missing, unexpected = model.load_state_dict(raw, strict=False)
    wrong = [k for k in missing if k not in packed and not _is_observer_key(k)]
    if wrong or unexpected:
        raise KeyError(f"{path} does not fit the model: missing {wrong[:5]}, unexpected {unexpected[:5]}")
    modules = dict(model.named_modules())
    for key, e in packed.items():
        layer = modules[key[: -len(".weight")]]
        assert isinstance(layer, QuantLayer) and layer.weight_quantizer is not None
        weight: Tensor = layer.weight  # type: ignore[assignment]
        p = quant_params(layer.weight_quantizer, torch.empty(e["shape"]))
        rows_shape = channel_view(torch.empty(e["shape"]), p.granularity).shape
        units = unit_index(p.granularity, rows_shape[0])
        counts = [int((units == u).sum()) * rows_shape[1] for u in range(p.bits.numel())]
        codes = unpack_codes(e["blob"], counts, p.bits.tolist())
        q_min, _ = p.bounds()
        rows = torch.empty(rows_shape, dtype=torch.long)
        for u, c in enumerate(codes):
            rows[units == u] = torch.from_numpy(c).reshape(-1, rows_shape[1]) + q_min[u]
        axis = getattr(p.granularity, "axis", None)
        if axis is None:
            q = rows.reshape(e["shape"])
        else:
            shape = list(e["shape"])
            moved = [shape.pop(axis % len(shape))] + shape
            q = rows.reshape(moved).movedim(0, axis)
        weight.copy_(dequantize(LayerIntegers(q, p)).to(weight.dtype))
    return dict(header["meta"])
