"""Every shipped quant config loads with mmcv and passes the quant section's validation."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmcv import Config

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.quant_section import hook_configs, merge_quant_section, parse_quant_section

REPO = Path(__file__).resolve().parents[2]
QUANT_CONFIGS = sorted(p for d in ("mmdet/qdrop", "mmdet/rdoq", "bench/qdrop", "bench/rdoq")
                       for p in (REPO / "configs" / d).glob("*.py"))


def test_the_expected_configs_exist() -> None:
    names = {p.stem for p in QUANT_CONFIGS}
    for det in ("faster_rcnn", "retinanet"):
        for depth in ("r50", "r101"):
            for suffix in ("w4a4", "w2a4", "rdoq_w3a4", "rdoq_qdrop_w3a4"):
                assert f"{det}_{depth}_fpn_2x_coco_{suffix}" in names
        assert f"{det}_r50_narrow_digits_rdoq_w3a4" in names


@pytest.mark.parametrize("path", QUANT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_validates(path: Path) -> None:
    cfg = Config.fromfile(str(path))
    qcfg = parse_quant_section(merge_quant_section(cfg.get("quant"), None))
    hooks = [h["type"] for h in hook_configs(qcfg)]
    assert hooks[0] == "QuantCalibHook"
    assert ("QDropReconHook" in hooks) == (qcfg.recon is not None)
    assert ("BitAllocHook" in hooks) == ("rdoq" in path.stem) == (qcfg.rdoq is not None)
    assert "mmdet_ext" in cfg.custom_imports["imports"]
