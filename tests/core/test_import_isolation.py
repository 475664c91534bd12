"""Importing the core loads no framework: no mmdet, mmcv or pcdet module."""
from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, rdoq_plugins, rdoq_plugins.recon, rdoq_plugins.config;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'mmdet', 'mmcv', 'pcdet', 'spconv'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
