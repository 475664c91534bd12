"""The benchmark package stays cheap to import: frameworks load only where a module needs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = "{'mmdet', 'mmcv', 'pcdet', 'spconv'}"


def _loaded_frameworks(modules: str) -> list[str]:
    code = (
        f"import sys, {modules};"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return [m for m in out.stdout.strip().split(",") if m]


def test_package_import_is_light() -> None:
    code = "import sys, rdoq_bench; print(','.join(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("modules", [
    "rdoq_bench.digits_coco, rdoq_bench.coco_scale",
    "rdoq_bench.run_mmdet, rdoq_bench.run_sparse, rdoq_bench.run_alloc, rdoq_bench.train",
])
def test_data_and_runners_import_no_framework(modules: str) -> None:
    assert _loaded_frameworks(modules) == []
