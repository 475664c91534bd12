"""An evaluation that yields no metrics stops the run: report.json never holds empty metrics."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tools.test import main as run_test_tool

# No box can score above 1: mmdet's COCO evaluation prints "results empty" and returns nothing.
NOTHING_DETECTED = ("model = dict(test_cfg=dict(rcnn=dict(score_thr=1.1)))\n"
                    "quant = dict(calibrate=2, recon=None)")


def test_no_detections_is_an_error_not_an_empty_report(make_config: Callable[..., Path],
                                                       random_checkpoint: Callable[[str], Path],
                                                       tmp_path: Path) -> None:
    config = make_config(quant=NOTHING_DETECTED, name="nothing")
    work = tmp_path / "work"
    with pytest.raises(RuntimeError, match=r"FP32 test: the evaluation gave no metrics, the model detected nothing on the 8 "):
        run_test_tool([str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")), "--work-dir",
                       str(work)])
    assert not (work / "report.json").exists()
