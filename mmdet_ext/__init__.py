"""mmdetection 2.x adapter of rdoq-plugins: quantization hooks registered in mmcv's ``HOOKS``.

Add ``custom_imports = dict(imports=['mmdet_ext'], allow_failed_imports=False)`` and a ``quant``
section to a detector config, then run ``tools/test.py`` or ``tools/dist_test.sh``.
"""
from rdoq_plugins.quiet import quiet_cpu_warnings

# mmcv 1.x's notice of its 2.0 release, printed at import (a regex, matched at the start)
MMCV_MESSAGE = r"On January 1, 2023, MMCV will release v2\.0\.0"
quiet_cpu_warnings([(MMCV_MESSAGE, "mmcv")])  # before mmcv is imported (the tools import this package first)

from mmdet_ext.hooks import BitAllocHook, QDropReconHook, QuantCalibHook, QuantHook, RDCurvesHook

__all__ = ["BitAllocHook", "QDropReconHook", "QuantCalibHook", "QuantHook", "RDCurvesHook"]
