"""The core export modules load no framework and no ONNX package until an ONNX function runs."""
from __future__ import annotations

import subprocess
import sys


def test_export_imports_no_framework_or_onnx() -> None:
    code = (
        "import sys, rdoq_plugins.export, rdoq_plugins.export.onnx_qdq, rdoq_plugins.export.parity,"
        " rdoq_plugins.export.ort_kernels;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'mmdet', 'mmcv', 'pcdet', 'spconv', 'onnx', 'onnxruntime'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
