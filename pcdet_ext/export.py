"""Deployable output of a quantized spconv detector (issue 17, item 3): ``weights.packed`` and a
manifest an integer sparse-convolution engine reads.

Sparse convolutions have no ONNX operator, so there is no graph file. :func:`export_sparse` writes

* ``weights.packed``: :func:`rdoq_plugins.export.write_packed` of the model (every quantized weight
  bit-packed at its groups' bits, with steps, zero points, bit maps, activation steps, biases and
  the FP layers);
* ``manifest.json``: :func:`sparse_manifest`, one entry per quantized layer (``"layers"``, in
  module order) with what an engine needs to run it in integers: the layer kind (``SubMConv3d``,
  ``SparseConv3d``, ``SubMConv2d``, ``SparseConv2d``, ``SparseInverseConv3d``; ``Conv2d`` /
  ``Linear`` for dense layers), channels, kernel size, stride, padding, dilation, output padding,
  ``indice_key`` (layers sharing it share one rulebook), the weight layout, and per quantizer its
  granularity, bits, steps and zero points per unit; plus the quant config that rebuilds the
  quantized structure (:func:`load_exported`).

Integer semantics (every quantizer, per unit ``u`` with ``b`` bits, step ``s`` and zero point ``z``)::

    q_min, q_max = (-2^(b-1), 2^(b-1) - 1) if symmetric else (0, 2^b - 1);  b = 0: pruned (value 0)
    weight:      w_hat = (q - z) * s       q: the packed integers
    activation:  x_hat = (clamp(round(x / s) + z, q_min, q_max) - z) * s

Steps are float32 and written exactly (a JSON number of the float32 value). An LSQ activation
quantizer's forward step is ``s`` up to one float32 ulp (its gradient-scaling identity).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pcdet_ext.layers import QUANT_SPARSE_LAYERS
from pcdet_ext.sparse_detector import quantize_sparse_model
from rdoq_plugins import QuantConfig
from rdoq_plugins.export import deployed_state_dict, load_packed, write_packed
from rdoq_plugins.export.integers import quant_params
from rdoq_plugins.footprint import size_bytes
from rdoq_plugins.granularity import Granularity, PerChannel, PerGroup
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.fake_quantize import FakeQuantize

MANIFEST_FORMAT = "rdoq-plugins/spconv-manifest/v1"
MANIFEST = "manifest.json"
PACKED = "weights.packed"
_SPARSE_KINDS = {quant: fp.__name__ for fp, quant in QUANT_SPARSE_LAYERS.items()}
_GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "output_padding")


def layer_kind(layer: nn.Module) -> str:
    """The FP class a quantized layer wraps (``SubMConv3d``, ``Conv2d``...)."""
    for cls in type(layer).__mro__:
        if cls in _SPARSE_KINDS:
            return _SPARSE_KINDS[cls]
        if not issubclass(cls, QuantLayer) and issubclass(cls, nn.Module):
            return cls.__name__
    return type(layer).__name__


def _granularity(g: Granularity) -> dict[str, Any]:
    if isinstance(g, PerGroup):
        return {"kind": "per_group", "axis": g.axis, "size": g.size}
    if isinstance(g, PerChannel):
        return {"kind": "per_channel", "axis": g.axis}
    return {"kind": "per_tensor"}


def _floats(t: Tensor) -> list[float]:
    return [float(v) for v in t.detach().float().cpu().reshape(-1)]


def quantizer_entry(q: FakeQuantize, key: str, x: Tensor | None = None) -> dict[str, Any]:
    """One quantizer's per-unit parameters; ``x``: the weight (an LSQ weight's forward step needs it)."""
    p = quant_params(q, x) if x is not None else None
    scale = p.scale if p is not None else q.scale.detach()
    zero = p.zero_point if p is not None else q.zero_point.detach().round()
    return {"state_key": key, "quantizer": type(q).__name__, "symmetric": bool(q.symmetric),
            "granularity": _granularity(q.granularity), "bits": [int(b) for b in q.bits],
            "scale": _floats(scale), "zero_point": _floats(zero)}


def _weight_layout(layer: nn.Module, kind: str) -> str:
    if kind not in _SPARSE_KINDS.values():
        return "torch: [out, in, *kernel]" if kind != "Linear" else "torch: [out, in]"
    if getattr(layer, "conv1x1", False):
        return "spconv 1x1 (stride 1): features @ storage.view(in, out); units run over axis 0 of the storage"
    return "spconv KRSC: [out, *kernel, in]"


def layer_entry(name: str, layer: QuantLayer) -> dict[str, Any]:
    """The manifest entry of one quantized layer."""
    kind = layer_kind(layer)
    weight: Tensor = layer.weight  # type: ignore[assignment]
    entry: dict[str, Any] = {"name": name, "kind": kind, "in_channels": int(getattr(layer, "in_channels", 0)
                                                                             or getattr(layer, "in_features", 0)),
                             "out_channels": int(getattr(layer, "out_channels", 0) or getattr(layer, "out_features", 0))}
    for attr in _GEOMETRY:
        value = getattr(layer, attr, None)
        if value is not None:
            entry[attr] = [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value)
    if kind in _SPARSE_KINDS.values():
        entry.update({"ndim": int(layer.ndim), "subm": bool(layer.subm), "transposed": bool(layer.transposed),
                      "inverse": bool(layer.inverse), "indice_key": layer.indice_key, "groups": int(layer.groups),
                      "conv1x1": bool(getattr(layer, "conv1x1", False))})
    bias = getattr(layer, "bias", None)
    entry["weight"] = {"state_key": f"{name}.weight", "shape": list(weight.shape),
                       "layout": _weight_layout(layer, kind)}
    entry["bias"] = f"{name}.bias" if isinstance(bias, Tensor) else None
    wq = layer.weight_quantizer
    if wq is not None and bool(wq.fake_quant_enabled):
        entry["weight"]["quant"] = quantizer_entry(wq, f"{name}.weight_quantizer", weight)
    for side in ("input", "output"):
        q = getattr(layer, f"{side}_quantizer")
        if q is None or not bool(getattr(q, "fake_quant_enabled", 1)):
            entry[f"{side}_quant"] = None
        elif isinstance(q, FakeQuantize):
            entry[f"{side}_quant"] = quantizer_entry(q, f"{name}.{side}_quantizer")
        else:
            raise ValueError(f"{name}: {type(q).__name__} {side} quantizers are not described by this manifest")
    return entry


def sparse_manifest(model: nn.Module, qcfg: QuantConfig, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a quantized model (see the module docstring)."""
    layers = [layer_entry(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]
    return {"format": MANIFEST_FORMAT, "packed": PACKED, "meta": meta or {}, "quant_config": qcfg.to_dict(),
            "semantics": {"weight": "w_hat = (q - z) * s", "activation": "x_hat = (clamp(round(x / s) + z, "
                          "q_min, q_max) - z) * s", "bounds": "symmetric: [-2^(b-1), 2^(b-1)-1], else [0, 2^b-1]; "
                          "b = 0: pruned", "activation_axis": "features [N, C]: channel units along C",
                          "packed": "weights.packed holds q - q_min at each unit's bits, units in order along the "
                          "unit axis, least significant bit first (rdoq_plugins/export/packed.py)"},
            "layers": layers}


def export_sparse(model: nn.Module, qcfg: QuantConfig, out: Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes ``weights.packed`` and ``manifest.json`` into ``out``; returns sizes and the layer count."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    packed = write_packed(model, out / PACKED, meta)
    manifest = sparse_manifest(model, qcfg, meta)
    sizes = size_bytes(model)
    manifest["size_bytes"] = {"packed": packed["bytes"], "header": packed["header_bytes"],
                              "predicted": sizes["quant"], "fp32": sizes["fp32"]}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / MANIFEST)
    return {"layers": len(manifest["layers"]), **manifest["size_bytes"]}


def read_manifest(out: Path) -> dict[str, Any]:
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{out / MANIFEST}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    return manifest


def _geometry(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry["kind"], entry["in_channels"], entry["out_channels"], *(entry.get(a) for a in _GEOMETRY))


@torch.no_grad()
def load_exported(model: nn.Module, out: Path, extra_keys: tuple[str, ...] = ()) -> tuple[nn.Module, QuantConfig]:
    """Rebuilds the fake-quantized model from ``out`` in ``model``, a freshly built FP structure
    with BN folded (its weights are not used): wraps it with the manifest's quant config, loads
    ``weights.packed`` and checks every manifest layer against the model (kind, geometry, bits)."""
    manifest = read_manifest(out)
    qcfg = QuantConfig.from_dict(manifest["quant_config"], extra_keys=extra_keys)
    quantize_sparse_model(model, qcfg, check=False)
    load_packed(model, out / manifest["packed"])
    built = [layer_entry(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]
    if [e["name"] for e in built] != [e["name"] for e in manifest["layers"]]:
        raise ValueError(f"{out}: the model's quantized layers differ from the manifest's")
    for got, want in zip(built, manifest["layers"]):
        if _geometry(got) != _geometry(want) or got["weight"].get("quant", {}).get("bits") != \
                want["weight"].get("quant", {}).get("bits"):
            raise ValueError(f"{out}: layer {want['name']} does not match the manifest")
    return model.eval(), qcfg


def same_state(a: nn.Module, b: nn.Module) -> list[str]:
    """Keys whose deployed tensors differ (value, dtype or presence) between two models."""
    sa, sb = deployed_state_dict(a), deployed_state_dict(b)
    return sorted(k for k in sa.keys() | sb.keys()
                  if k not in sa or k not in sb or sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k]))


__all__ = ["MANIFEST", "MANIFEST_FORMAT", "PACKED", "export_sparse", "layer_entry", "layer_kind", "load_exported",
           "quantizer_entry", "read_manifest", "same_state", "sparse_manifest"]
