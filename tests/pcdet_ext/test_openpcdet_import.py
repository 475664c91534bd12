"""OpenPCDet is imported only when a tool runs (``pcdet_ext.openpcdet_import``): importing the
adapter loads no framework, and a tool without OpenPCDet (or without spconv) says how to install
it, in a subprocess, without a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from tests.pcdet_ext.conftest import HAS_PCDET, REPO

TOOLS = ("test", "recon", "gen_rd_curves", "dp_alloc")


def _run_tool(tool: str, extra: list[str], tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["--cfg_file", str(tmp_path / "c.yaml"), "--ckpt", str(tmp_path / "m.pth"), "--work_dir",
            str(tmp_path / "work"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(REPO / "tools" / "pcdet" / f"{tool}.py")
    cmd = [sys.executable, script, *argv] if code is None else [sys.executable, "-c", code, script, *argv]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.skipif(HAS_PCDET, reason="OpenPCDet is installed: the missing-OpenPCDet error cannot occur")
@pytest.mark.parametrize("tool", TOOLS)
def test_tools_say_how_to_install_openpcdet(tool: str, tmp_path: Path) -> None:
    out = _run_tool(tool, [], tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    assert "OpenPCDet (pcdet) is not importable" in out.stderr
    assert "python setup.py develop" in out.stderr and "spconv-cu" in out.stderr
    assert not (tmp_path / "work").exists()


def test_tools_say_how_to_install_spconv_when_it_is_missing(tmp_path: Path) -> None:
    # spconv hidden: pcdet_ext itself cannot load.
    code = ("import runpy, sys; sys.modules['spconv'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = _run_tool("test", [], tmp_path, code=code)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "spconv" in out.stderr and "spconv-cu" in out.stderr and "setup.py develop" in out.stderr


def test_importing_pcdet_ext_loads_no_framework() -> None:
    code = (
        "import sys, pcdet_ext;"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'pcdet', 'mmdet', 'mmcv'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=REPO)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


def test_importing_the_adapter_loads_no_openpcdet() -> None:
    code = ("import sys, pcdet_ext, pcdet_ext.prepare, pcdet_ext.quantize, pcdet_ext.evaluate, pcdet_ext.outputs, pcdet_ext.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pcdet', 'mmdet', 'mmcv'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert out.stdout.strip() == "[]"
