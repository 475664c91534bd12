"""Reconstruction units of VoxelNeXt-shaped sparse detectors, found by module type and structure.

For OpenPCDet's VoxelNeXt (``VoxelResBackBone8xVoxelNeXt`` + ``VoxelNeXtHead``) the units are,
in forward order:

* ``conv_input``: a conv block (SubMConv3d + BN1d + ReLU);
* every ``SparseBasicBlock`` (two SubMConv3d with BN, residual add): ``conv1.0``, ``conv1.1``,
  ``conv2.1``, ...;
* every downsampling block, the ``SparseSequential`` that holds a strided ``SparseConv3d``
  (``conv2.0`` .. ``conv6.0``);
* ``conv_out`` (SparseConv2d block) and ``shared_conv`` (SubMConv2d block);
* every head branch: each child of a ``SeparateHead`` (``heads_list.<i>.<name>``: 1x1 SubMConv2d
  + BN1d + ReLU, then the 1x1 output SubMConv2d).

Rules (no OpenPCDet import; classes are matched by name along the MRO, so OpenPCDet's own classes
and look-alikes are found the same way): a module is a unit if it contains a quantized layer and
is a residual block (class ``SparseBasicBlock``), a child of a head (class ``SeparateHead``), or a
*conv block*: a ``SparseSequential`` / ``Sequential`` with exactly one direct sparse conv child and
only weightless children otherwise (BN, Identity, activations). Any other quantized layer is a unit
of its own. Units do not nest; the list is in registration order (sort it with
:func:`rdoq_plugins.recon.call_order` for forward order).
"""
from __future__ import annotations

from enum import Enum

from spconv.pytorch.conv import SparseConvolution
from spconv.pytorch.modules import SparseSequential
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rdoq_plugins.modules.quant_layer import QuantLayer

BLOCK_CLASSES = ("SparseBasicBlock",)
HEAD_CLASSES = ("SeparateHead",)


class UnitKind(str, Enum):
    """What a unit is, for reports."""

    BLOCK = "block"  # residual SparseBasicBlock
    DOWNSAMPLE = "downsample"  # conv block around a strided sparse conv
    CONV = "conv"  # other conv block (conv_input, conv_out, shared_conv)
    HEAD_BRANCH = "head_branch"
    LAYER = "layer"  # a quantized layer outside every pattern


def _class_names(module: nn.Module) -> set[str]:
    return {c.__name__ for c in type(module).__mro__}


def is_residual_block(module: nn.Module) -> bool:
    return bool(_class_names(module) & set(BLOCK_CLASSES))


def is_head(module: nn.Module) -> bool:
    return bool(_class_names(module) & set(HEAD_CLASSES))


def _weightless(module: nn.Module) -> bool:
    return isinstance(module, (_BatchNorm, nn.Identity)) or not any(True for _ in module.parameters())


def conv_block_conv(module: nn.Module) -> SparseConvolution | None:
    """The sparse conv of a conv block (see the module docstring), else None."""
    if not isinstance(module, (SparseSequential, nn.Sequential)):
        return None
    children = list(module.children())
    convs = [c for c in children if isinstance(c, SparseConvolution)]
    if len(convs) != 1 or not all(_weightless(c) for c in children if c is not convs[0]):
        return None
    return convs[0]


def _has_quant_layer(module: nn.Module) -> bool:
    return any(isinstance(m, QuantLayer) for m in module.modules())


def unit_kind(model: nn.Module, name: str) -> UnitKind | None:
    """The kind of unit module ``name`` is by itself (ignoring nesting), or None."""
    module = model.get_submodule(name)
    if not name or not _has_quant_layer(module):
        return None
    if is_residual_block(module):
        return UnitKind.BLOCK
    parent = model.get_submodule(name.rpartition(".")[0])
    if is_head(parent):
        return UnitKind.HEAD_BRANCH
    conv = conv_block_conv(module)
    if conv is not None:
        strided = not conv.subm and not conv.inverse and any(int(s) > 1 for s in conv.stride)
        return UnitKind.DOWNSAMPLE if strided else UnitKind.CONV
    if isinstance(module, QuantLayer):
        return UnitKind.LAYER
    return None


def sparse_units(model: nn.Module) -> dict[str, UnitKind]:
    """The reconstruction units of ``model`` (quantized already) by module name, with their kinds,
    in registration order; every quantized layer lies in exactly one unit."""
    units: dict[str, UnitKind] = {}
    inside: str | None = None
    for name, _ in model.named_modules():
        if inside is not None and name.startswith(inside):
            continue
        kind = unit_kind(model, name)
        if kind is not None:
            units[name] = kind
            inside = name + "."
    covered = {n for u in units for n, m in model.get_submodule(u).named_modules(prefix=u) if isinstance(m, QuantLayer)}
    missing = [n for n, m in model.named_modules() if isinstance(m, QuantLayer) and n not in covered]
    if missing:  # cannot happen by construction; a guard for future rules
        raise RuntimeError(f"quantized layers outside every unit: {missing[:3]}")
    return units
