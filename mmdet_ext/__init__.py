"""mmdetection 2.x adapter of rdoq-plugins: quantization hooks registered in mmcv's ``HOOKS``.

Add ``custom_imports = dict(imports=['mmdet_ext'], allow_failed_imports=False)`` and a ``quant``
section to a detector config, then run ``tools/test.py`` or ``tools/dist_test.sh``.
"""
from rdoq_plugins.quiet import quiet_cpu_warnings

quiet_cpu_warnings()  # before mmcv is imported, which prints them (the tools import this package first)

from mmdet_ext.hooks import BitAllocHook, QDropReconHook, QuantCalibHook, QuantHook, RDCurvesHook

__all__ = ["BitAllocHook", "QDropReconHook", "QuantCalibHook", "QuantHook", "RDCurvesHook"]
