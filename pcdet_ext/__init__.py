"""OpenPCDet adapter of rdoq-plugins: quantized spconv layers and the VoxelNeXt adapter.

Importing ``pcdet_ext`` imports torch, spconv and the core only, and registers the quantized
spconv layers (:mod:`pcdet_ext.layers`) with the core's ``quantize_model`` / ``fuse_conv_bn``.
On a machine without CUDA, call :func:`apply_cpu_patches` before running spconv layers.

The sparse path without OpenPCDet: :func:`quantize_sparse_detector` (the core workflow's steps on
:func:`sparse_units` through :class:`SparseUnitIO`) and strict quantized checkpoints
(:func:`save_quantized` / :func:`load_quantized`).

The OpenPCDet run (:mod:`pcdet_ext.prepare`, :mod:`~pcdet_ext.quantize`, :mod:`~pcdet_ext.evaluate`,
:mod:`~pcdet_ext.outputs`, behind ``tools/pcdet/``) follows OpenPCDet's ``tools/test.py``. OpenPCDet is not installable from the package registries, so ``pcdet`` is
imported lazily, inside its functions; importing ``pcdet_ext`` never imports it.
"""
from rdoq_plugins.quiet import quiet_cpu_warnings

quiet_cpu_warnings()  # before spconv and OpenPCDet are imported (the tools import this package first)

from pcdet_ext.cpu_patches import apply_cpu_patches
from pcdet_ext.layers import (
    QUANT_SPARSE_LAYERS,
    QuantSparseConv2d,
    QuantSparseConv3d,
    QuantSparseConvolution,
    QuantSparseInverseConv3d,
    QuantSubMConv2d,
    QuantSubMConv3d,
)
from pcdet_ext.sparse_detector import (
    load_quantized,
    quantize_sparse_detector,
    quantize_sparse_model,
    save_quantized,
)
from pcdet_ext.sparse_io import SparseUnitIO
from pcdet_ext.units import UnitKind, sparse_units

__all__ = [
    "QUANT_SPARSE_LAYERS",
    "QuantSparseConv2d",
    "QuantSparseConv3d",
    "QuantSparseConvolution",
    "QuantSparseInverseConv3d",
    "QuantSubMConv2d",
    "QuantSubMConv3d",
    "SparseUnitIO",
    "UnitKind",
    "apply_cpu_patches",
    "load_quantized",
    "quantize_sparse_detector",
    "quantize_sparse_model",
    "save_quantized",
    "sparse_units",
]
