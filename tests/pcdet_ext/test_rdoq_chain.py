"""The OpenPCDet RDOQ tools chain on one work dir (stand-in checkout): the curve tool's flags are
recorded, and ``dp_alloc.py`` and ``test.py`` without them reuse its curves."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from tests.pcdet_ext.conftest import tool_argv
from tools.pcdet import dp_alloc as dp_alloc_tool
from tools.pcdet import gen_rd_curves as curves_tool
from tools.pcdet import test as test_tool


def test_later_tools_reuse_the_curves_of_the_curve_tools_flags(fake_openpcdet: dict[str, Any],
                                                                tmp_path: Path) -> None:
    work = tmp_path / "work"
    info = curves_tool.main(tool_argv(fake_openpcdet, work, "rdoq", "--nchannelbatch", "8", "--testsize", "1"))
    assert info is not None and info["computed"] == info["layers"] > 0
    summary = dp_alloc_tool.main(tool_argv(fake_openpcdet, work, "rdoq", "--no-measure"))
    assert summary is not None and [r["target_rate"] for r in summary["rates"]] == [2.0, 4.0]
    report = test_tool.main(tool_argv(fake_openpcdet, work, "rdoq", "--skip_fp"))
    curves = report["rdoq"]["curves"]
    assert curves["computed"] == 0 and curves["reused"] == info["layers"] and curves["dir"] == info["dir"]
    assert [p.name for p in (work / "rd_curves").iterdir() if p.is_dir()] == [Path(info["dir"]).name]
    stored = json.loads((work / "rd_curves" / "settings.json").read_text())
    assert stored["flags"] == {"weight_group": 8, "act_group": 8, "calib_images": 1}
