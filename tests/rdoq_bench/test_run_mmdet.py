"""The bench's row settings: every method's quant section parses, the official rows follow QDrop's
protocol, and the reconstruction sweep runs each length once plus the early-stop run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmdet_ext.quant_section import parse_quant_section
from rdoq_bench import recon_iters
from rdoq_bench.run_mmdet import METHODS, quant_section


@pytest.mark.parametrize("model", ["faster_rcnn", "retinanet"])
@pytest.mark.parametrize("method", METHODS)
def test_every_row_section_parses(model: str, method: str) -> None:
    section = quant_section(model, method, 4, 4, 500, 64)
    parse_quant_section(section)
    official = method.endswith("-official")
    assert (section.get("heads") is False) == official
    if official:
        assert section["calib"] == {"split": "train", "samples_per_gpu": 2, "seed": 1005}
        # With the heads FP an override of a head layer would match nothing (an input error).
        assert all(not key.startswith("re:bbox_head") for key in section["overrides"])


def test_sweep_runs_each_length_then_early_stop(tmp_path: Path) -> None:
    calls: list[tuple[int, Any, str]] = []

    def run_row(iters: int, recon: dict[str, Any] | None, suffix: str) -> dict[str, Any] | None:
        calls.append((iters, recon, suffix))
        if iters == 250:
            return None  # not run (--no-run): left out
        mean = 180.0 if recon else float(iters)
        return {"model": "faster_rcnn", "method": "qdrop", "iters": iters, "mean_unit_iters": mean,
                "bbox_mAP": 0.5 + iters / 1e4}

    rows = recon_iters.sweep(run_row, (100, 250, 1000), 1000)
    assert calls == [(100, None, ""), (250, None, ""), (1000, None, ""),
                     (1000, {"early_stop": recon_iters.EARLY_STOP}, "_es")]
    assert len(recon_iters.sweep(run_row, (100,), 0)) == 1  # no early-stop run
    assert [(r["iters"], r["early_stop"]) for r in rows] == [(100, None), (1000, None),
                                                              (1000, recon_iters.EARLY_STOP)]
    png = tmp_path / "recon_iters.png"
    recon_iters.plot(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_replaces_matching_rows_and_keeps_the_rest() -> None:
    from rdoq_bench.run_mmdet import merge_rows

    def r(method: str, ap: float, **kw: Any) -> dict[str, Any]:
        return {"model": "faster_rcnn", "method": method, "w_bits": 4, "a_bits": 4, "bbox_mAP": ap, **kw}

    old = [r("minmax", 0.6), r("qdrop", 0.7), r("rdoq", 0.69)]  # rows written before the iters key
    new = [r("qdrop", 0.72, iters=500), r("qdrop", 0.65, iters=100, sweep="recon_iters"), r("qdrop-official", 0.73)]
    merged = merge_rows(old, new)
    assert [(m["method"], m["bbox_mAP"]) for m in merged] == [("minmax", 0.6), ("qdrop", 0.72), ("rdoq", 0.69),
                                                               ("qdrop", 0.65), ("qdrop-official", 0.73)]
