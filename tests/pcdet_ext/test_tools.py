"""The tools (``tools/pcdet/``) end to end on a stand-in OpenPCDet checkout
(:mod:`tests.pcdet_ext.fake_openpcdet`; no OpenPCDet needed): quantize, evaluate, report and reload
(``pcdet_ext.quantize``, ``evaluate``, ``outputs``), RD curves shared between the tools, and a
reconstruction-only run and its resumed rerun."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from rdoq_plugins.errors import InputError
from tests.pcdet_ext.conftest import tool_argv, tool_fails
from tools.pcdet import dp_alloc as dp_alloc_tool
from tools.pcdet import gen_rd_curves as curves_tool
from tools.pcdet import recon as recon_tool
from tools.pcdet import test as test_tool


def test_test_tool_quantizes_evaluates_and_reloads(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    import pcdet.datasets as fake_data
    import pcdet.models as fake_models

    work = tmp_path / "work"
    fake_data.READS.clear()
    calls = fake_models.HEAD_FORWARD_CALLS[0]
    report = test_tool.main(tool_argv(fake_openpcdet, work, "qdrop", "--batch_size", "2"))
    # Two evaluations of the 3 test frames in batches of 2; calibration never post-processes.
    assert fake_models.HEAD_FORWARD_CALLS[0] - calls == 4
    # Calibration read 2 of the 6 train frames (seeds 100..105) through the test pipeline.
    calib_reads = [s for mode, s in fake_data.READS if s >= 100]
    assert len(calib_reads) == 2 and all(mode == "test" for mode, _ in fake_data.READS)
    assert set(report["fp"]) >= {"mAP", "recall/roi_0.3", "AP_car"} and "note" not in report["fp"]
    assert set(report["quant"]) == set(report["fp"])
    assert report["method"] == "qdrop" and report["frames"] == 2 and report["world_size"] == 1
    assert 4.0 < report["bits"]["weight_avg"] < 4.5 and report["bits"]["act_avg"] == 8.0
    assert report["size_bytes"]["quant"] < report["size_bytes"]["fp32"] / 4
    assert {"prepare", "eval_fp", "calib_data", "calibrate", "reconstruct", "eval_quant"} <= set(report["time_s"])
    assert report["peak_rss_mb"] > 0 and len(report["recon_units"]) == 24
    assert json.loads((work / "report.json").read_text())["quant"] == report["quant"]
    assert (work / "eval" / "fp" / "result.pkl").is_file() and (work / "eval" / "quant" / "result.pkl").is_file()
    assert not list(work.glob(".*tmp*"))
    # The quantized checkpoint evaluates again without calibration, to the same result.
    fake_data.READS.clear()
    again = test_tool.main(tool_argv(fake_openpcdet, tmp_path / "again", None, ckpt=work / "quantized.pth"))
    assert again["quant"] == report["quant"] and again["fp"] == {} and again["bits"] == report["bits"]
    assert all(s < 100 for _, s in fake_data.READS)  # test frames only


def test_rdoq_tools_share_curves_with_the_test_tool(fake_openpcdet: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    info = curves_tool.main(tool_argv(fake_openpcdet, work, "rdoq"))
    assert info is not None and info["computed"] == info["layers"] > 20 and info["images"] == 2
    again = curves_tool.main(tool_argv(fake_openpcdet, work, "rdoq"))
    assert again is not None and again["computed"] == 0 and again["dir"] == info["dir"]
    summary = dp_alloc_tool.main(tool_argv(fake_openpcdet, work, "rdoq", "--target_rates", "2", "3", "4"))
    assert summary is not None and [r["target_rate"] for r in summary["rates"]] == [2.0, 3.0, 4.0]
    assert all(r["measured_distortion"] is not None for r in summary["rates"])
    assert {p.name for p in (work / "rd_alloc").iterdir()} >= {"rate_2.json", "rate_3.json", "rate_4.json",
                                                                "summary.json", "rd_curves.png", "bits_heatmap.png"}
    assert "additivity: Pearson r" in capsys.readouterr().out
    report = test_tool.main(tool_argv(fake_openpcdet, work, "rdoq", "--skip_fp"))
    assert report["method"] == "rdoq" and report["fp"] == {} and report["quant"]
    assert report["rdoq"]["curves"]["computed"] == 0 and report["rdoq"]["curves"]["dir"] == info["dir"]
    assert report["rdoq"]["applied"]["avg_bits"] <= 4.0 + 1e-9
    tool_fails(dp_alloc_tool.main, tool_argv(fake_openpcdet, tmp_path / "fresh", "rdoq", "--no-measure"),
               FileNotFoundError, "RD curves are missing", tmp_path / "fresh")


def test_recon_tool_writes_a_checkpoint_only(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    report = recon_tool.main(tool_argv(fake_openpcdet, tmp_path / "work", "qdrop1"))
    assert report is not None and report["fp"] == {} and report["quant"] == {} and report["frames"] == 1
    assert all(u["iters"] == 1 for u in report["recon_units"].values())
    # The checkpoint, the report and the resumable state (no evaluation results, no spill left).
    assert {p.name for p in (tmp_path / "work").iterdir()} == {"quantized.pth", "report.json", "quant_state"}
    assert [p.name for p in (tmp_path / "work" / "quant_state").iterdir()] == ["state.pth"]
    # A rerun resumes the saved state: its report counts both attempts and their time.
    assert report["attempts"] == 1
    again = recon_tool.main(tool_argv(fake_openpcdet, tmp_path / "work", "qdrop1"))
    assert again is not None and again["attempts"] == 2
    assert again["time_s"]["calibrate"] == report["time_s"]["calibrate"]  # not rerun: the first attempt's
    assert again["time_s"]["prepare"] > report["time_s"]["prepare"]
    quantized = tmp_path / "work" / "quantized.pth"  # given where the FP checkpoint belongs: one line, nothing written
    tool_fails(recon_tool.main, tool_argv(fake_openpcdet, tmp_path / "other", None, ckpt=quantized), InputError,
               rf"^{quantized} is a quantized checkpoint \(a quantized\.pth of ours\); pass the FP checkpoint it was "
               rf"made from instead, or evaluate this one with tools/pcdet/test\.py --ckpt {quantized}$",
               tmp_path / "other")


def test_the_reconstruction_cost_is_logged_before_the_fp_evaluation(
        fake_openpcdet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16, item 5: as on the mmdet side, the cache projection and capture passes are printed
    before any long work (here, before the FP evaluation)."""
    import pcdet_ext.evaluate

    class Stop(Exception):
        pass

    def evaluate(*_: Any, **__: Any) -> None:
        err = capsys.readouterr().err
        assert "reconstruction cache at 2 images per process" in err, err
        assert "capture passes per batch (1 groups of parallel units captured together)" in err, err
        raise Stop

    monkeypatch.setattr(pcdet_ext.evaluate, "evaluate", evaluate)
    with pytest.raises(Stop):
        test_tool.main(tool_argv(fake_openpcdet, tmp_path / "work", "qdrop", "--debug"))
