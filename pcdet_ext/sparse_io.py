"""Block reconstruction of spconv units: the core's :class:`~rdoq_plugins.recon.UnitIO` for
``SparseConvTensor`` inputs and outputs.

What a sparse unit sees in one call is a features tensor ``[N, C]`` plus structure: the active
sites (``indices``, ``[N, 1 + ndim]``, batch index first), the spatial shape, the batch size and
the ``indice_dict`` of rulebooks earlier layers left for later ones. The core caches the features
(quantized input, FP input, FP output) in its bounded :class:`~rdoq_plugins.recon.ChunkCache`;
the structure travels with each chunk as its *context*, a plain structure of tensors counted in the
cache budget and spilled with the chunk. A chunk is one calibration batch: voxel counts differ
between batches, so a reconstruction step reads one whole batch (as QDrop's official code does).

Facts of spconv 2.3 this relies on:

* Every conv copies the input's ``indice_dict`` before adding its own entry, so a captured
  tensor's dict does not grow later; but index tensors may be changed in place later in the same
  forward pass (VoxelNeXt rescales ``x_conv5.indices`` / ``x_conv6.indices`` with ``*=``), so the
  snapshot clones the sites (and the site tensors of the rulebook entries).
* Rulebooks of submanifold convs are recomputed when absent (the output sites equal the input
  sites), so the context keeps only the entries the unit cannot rebuild: those its inverse convs
  read. Rebuilding a unit's submanifold rulebooks costs a hash pass per step and saves memory
  (a 3x3x3 rulebook is 216 bytes per site, more than the site's features).
* Strided convs emit their output sites in a deterministic order for a given input, but the
  quantized and FP models' inputs are aligned by site anyway (``torch.equal`` first, a sort-based
  permutation otherwise), and so is a rerun's output against the cached FP output.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch
from spconv.core import ConvAlgo
from spconv.pytorch.conv import SparseConvolution
from spconv.pytorch.core import ImplicitGemmIndiceData, IndiceData, SparseConvTensor
from torch import Tensor, nn

_ENTRY_TYPES: dict[str, type] = {"IndiceData": IndiceData, "ImplicitGemmIndiceData": ImplicitGemmIndiceData}
_ENUMS: dict[str, type[Enum]] = {"ConvAlgo": ConvAlgo}
_SITE_FIELDS = ("indices", "out_indices")


@dataclass
class SparseSnapshot:
    """A captured ``SparseConvTensor``: its features, sites and structure, safe from later changes."""

    features: Tensor
    indices: Tensor
    spatial_shape: list[int]
    batch_size: int
    indice_dict: dict[str, Any] = field(default_factory=dict)


def snapshot_sparse(x: SparseConvTensor) -> SparseSnapshot:
    """Detached copies of ``x``'s features and sites; rulebook entries shallow-copied with their
    site tensors cloned."""
    entries = {}
    for key, entry in x.indice_dict.items():
        entry = copy.copy(entry)
        for name in _SITE_FIELDS:
            value = getattr(entry, name, None)
            if isinstance(value, Tensor):
                setattr(entry, name, value.clone())
        entries[key] = entry
    return SparseSnapshot(x.features.detach().clone(), x.indices.detach().clone(),
                          [int(s) for s in x.spatial_shape], int(x.batch_size), entries)


def _plain(value: Any) -> Any:
    """A ``torch.load(weights_only=True)``-loadable form of a rulebook field."""
    if isinstance(value, Tensor) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return {"__enum__": type(value).__name__, "value": value.value}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, tuple):
        return {"__tuple__": [_plain(v) for v in value]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot cache a rulebook field of type {type(value).__name__}")


def _rich(value: Any) -> Any:
    """Inverse of :func:`_plain`."""
    if isinstance(value, dict):
        if "__enum__" in value:
            return _ENUMS[value["__enum__"]](value["value"])
        if "__ndarray__" in value:
            return value["__ndarray__"].cpu().numpy()
        if "__tuple__" in value:
            return tuple(_rich(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_rich(v) for v in value]
    return value


def entry_to_plain(entry: Any) -> dict[str, Any]:
    """A rulebook entry (``IndiceData`` or ``ImplicitGemmIndiceData``) as plain data."""
    kind = type(entry).__name__
    if kind not in _ENTRY_TYPES:
        raise TypeError(f"unknown spconv rulebook entry {kind}")
    return {"type": kind, "fields": {k: _plain(v) for k, v in vars(entry).items()}}


def entry_from_plain(data: dict[str, Any]) -> Any:
    """Inverse of :func:`entry_to_plain`."""
    cls = _ENTRY_TYPES[data["type"]]
    entry = cls.__new__(cls)
    entry.__dict__.update({k: _rich(v) for k, v in data["fields"].items()})
    return entry


def site_keys(*indices: Tensor) -> list[Tensor]:
    """One int64 key per site (batch index and coordinates), comparable across the given tensors."""
    rows = [i.long() for i in indices]
    both = torch.cat(rows)
    extent = both.max(dim=0).values + 1 if len(both) else torch.ones(both.shape[1], dtype=torch.long)
    keys = []
    for r in rows:
        k = torch.zeros(len(r), dtype=torch.long, device=r.device)
        for d in range(r.shape[1]):
            k = k * extent[d] + r[:, d]
        keys.append(k)
    return keys


def site_permutation(src: Tensor, dst: Tensor) -> Tensor | None:
    """``perm`` with ``src[perm]`` listing the sites of ``dst`` in ``dst``'s order (None when the
    orders already agree); an error when the two hold different sites or repeat one."""
    if src.shape == dst.shape and torch.equal(src, dst):
        return None
    if src.shape != dst.shape:
        raise RuntimeError(f"sparse tensors with {len(src)} and {len(dst)} sites cannot be aligned")
    k_src, k_dst = site_keys(src, dst)
    s_src, o_src = k_src.sort()
    s_dst, o_dst = k_dst.sort()
    if not torch.equal(s_src, s_dst) or bool((s_src[1:] == s_src[:-1]).any()):
        raise RuntimeError("sparse tensors hold different (or repeated) sites and cannot be aligned")
    perm = torch.empty_like(o_dst)
    perm[o_dst] = o_src
    return perm


def inverse_keys(unit: nn.Module) -> set[str]:
    """The rulebook keys ``unit``'s inverse convs read (they cannot rebuild their rulebook)."""
    return {m.indice_key for m in unit.modules()
            if isinstance(m, SparseConvolution) and m.inverse and m.indice_key is not None}


class SparseUnitIO:
    """:class:`~rdoq_plugins.recon.UnitIO` for spconv units (``SparseConvTensor`` in, and a
    ``SparseConvTensor`` or a features tensor out); plain tensors pass through unchanged."""

    def snapshot(self, x: Any) -> Any:
        if isinstance(x, SparseConvTensor):
            return snapshot_sparse(x)
        if isinstance(x, Tensor):
            return x.detach().clone()
        raise TypeError(f"a sparse unit's input / output must be a SparseConvTensor or a tensor, got "
                        f"{type(x).__name__}")

    def chunk(self, unit: nn.Module, quant_in: Any, fp_in: Any, fp_out: Any) -> tuple[Tensor, Tensor, Tensor, Any]:
        if not isinstance(fp_in, SparseSnapshot):  # a dense unit: the core's plain path
            if not isinstance(quant_in, Tensor) or quant_in.shape != fp_in.shape:
                raise RuntimeError("quantized and FP inputs of the unit differ in kind or shape")
            out = fp_out.features if isinstance(fp_out, SparseSnapshot) else fp_out
            return quant_in, fp_in, out, None
        if not isinstance(quant_in, SparseSnapshot):
            raise TypeError("the quantized model's unit input is not sparse where the FP model's is")
        perm = site_permutation(quant_in.indices, fp_in.indices)
        q_features = quant_in.features if perm is None else quant_in.features[perm]
        if q_features.shape != fp_in.features.shape:
            raise RuntimeError(f"quantized and FP input features differ in shape: {tuple(q_features.shape)} vs "
                               f"{tuple(fp_in.features.shape)}")
        pairs = {k: entry_to_plain(fp_in.indice_dict[k]) for k in sorted(inverse_keys(unit))
                 if k in fp_in.indice_dict}
        sparse_out = isinstance(fp_out, SparseSnapshot)
        context = {"indices": fp_in.indices, "spatial_shape": list(fp_in.spatial_shape),
                   "batch_size": fp_in.batch_size, "pairs": pairs,
                   "out_indices": fp_out.indices if sparse_out else None}
        return q_features, fp_in.features, fp_out.features if sparse_out else fp_out, context

    def run(self, unit: nn.Module, x: Tensor, context: Any) -> Tensor:
        if context is None:
            out = unit(x)
            return out.features if isinstance(out, SparseConvTensor) else out
        indice_dict = {k: entry_from_plain(v) for k, v in context["pairs"].items()}
        sparse = SparseConvTensor(x, context["indices"], list(context["spatial_shape"]), int(context["batch_size"]),
                                  indice_dict=indice_dict)
        out = unit(sparse)
        if not isinstance(out, SparseConvTensor):
            return out
        if context["out_indices"] is None:
            return out.features
        perm = site_permutation(out.indices, context["out_indices"])
        return out.features if perm is None else out.features[perm]
