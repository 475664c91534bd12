"""OpenPCDet adapter of rdoq-plugins: quantized spconv layers and the VoxelNeXt adapter.

OpenPCDet is not installable from the package registries, so ``pcdet`` is imported lazily.
"""
