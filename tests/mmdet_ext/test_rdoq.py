"""RDOQ inside mmdet's test loop: curves, allocation, optional QDrop, evaluation, in one command;
curves are reused by a rerun, and the mixed-precision checkpoint evaluates again as saved."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rdoq_plugins.config import ConfigError
from tests.mmdet_ext.conftest import tool_fails
from tools.dp_alloc import main as dp_alloc
from tools.gen_rd_curves import main as gen_rd_curves
from tools.test import main as run_test_tool

RDOQ = ("rdoq=dict(target_rates=[3, 4], apply_rate={rate}, weight_bits=list(range(9)), weight_ratios=[1.0, 0.8],"
        " weight_group=16, projections=1, min_bits=1)")


def _quant(rate: int = 3, recon: str = "None", hooks: str = "") -> str:
    return (f"quant = dict(calibrate=4, calib=dict(samples_per_gpu=2), recon={recon}, {RDOQ.format(rate=rate)}, "
            "overrides={'backbone.conv1': dict(w_qconfig=dict(bit=8), a_qconfig=None)}"
            f"{', hooks=' + hooks if hooks else ''})")


def _run(config: Path, ckpt: Path, work: Path) -> dict:
    return run_test_tool([str(config), str(ckpt), "--work-dir", str(work), "--skip-fp"])


def test_tools_then_test_loop(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],
                              tmp_path: Path) -> None:
    ckpt = random_checkpoint("faster_rcnn_r50_narrow_digits.py")
    config, work = make_config(quant=_quant(3), name="rdoq3"), tmp_path / "w"
    info = gen_rd_curves([str(config), str(ckpt), "--work-dir", str(work)])
    assert info["computed"] == info["layers"] > 0 and info["reused"] == 0

    summary = dp_alloc([str(config), str(ckpt), "--work-dir", str(work), "--solver", "dp",
                        "--target_rates", "2", "3", "4"])
    rates = summary["rates"]
    assert [r["target_rate"] for r in rates] == [2.0, 3.0, 4.0]
    assert all(r["avg_bits"] <= r["target_rate"] + 1e-9 for r in rates)
    assert rates[0]["predicted_distortion"] > rates[1]["predicted_distortion"] > rates[2]["predicted_distortion"]
    assert rates[0]["measured_distortion"] > rates[2]["measured_distortion"] > 0
    assert summary["additivity"]["pearson"] is not None
    out = work / "rd_alloc"
    assert {"rate_2.json", "rate_3.json", "rate_4.json", "summary.json", "rd_curves.png",
            "bits_heatmap.png"} <= {p.name for p in out.iterdir()}

    # One command: curves (all reused from the tools' run), allocation, evaluation.
    report = _run(config, ckpt, work)
    assert report["method"] == "rdoq"
    alloc = report["rdoq"]
    assert alloc["curves"]["computed"] == 0 and alloc["curves"]["reused"] == info["layers"]
    chosen = next(r for r in alloc["rates"] if r["target_rate"] == 3.0)
    assert chosen["avg_bits"] <= 3.0 and chosen["kind_bits"]["weight"] == pytest.approx(chosen["avg_bits"])
    # The allocated layers' bits differ; the 8-bit first conv keeps its override.
    assert "backbone.conv1:weight" not in alloc["applied"]["layer_bits"]
    assert len(set(alloc["applied"]["layer_bits"].values())) > 1
    assert report["time_s"]["curves"] > 0 and report["time_s"]["allocate"] > 0

    # The mixed-precision checkpoint loads into a fresh model and gives the same result.
    reloaded = run_test_tool([str(make_config(name="plain_eval")), str(work / "quantized.pth"),
                              "--work-dir", str(tmp_path / "eval")])
    assert reloaded["quant"] == report["quant"] and reloaded["bits"] == report["bits"]


def test_rdoq_with_qdrop_keeps_group_bits(make_config: Callable[..., Path],
                                          random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    ckpt = random_checkpoint("faster_rcnn_r50_narrow_digits.py")
    config = make_config(quant=_quant(3, "dict(iters=2, batch_size=1)"), name="rdoq_qdrop")
    report = _run(config, ckpt, tmp_path / "w")
    assert report["method"] == "rdoq+qdrop"
    state = torch.load(tmp_path / "w" / "quantized.pth", weights_only=True)["state_dict"]
    grouped = [k for k, v in state.items() if k.endswith("weight_quantizer.bits") and v.numel() > 1
               and len(set(v.tolist())) > 1]
    assert grouped, "no layer kept mixed per-group bits after reconstruction"
    assert any(k.endswith("weight_quantizer.alpha") and v.numel() > 0 for k, v in state.items())


def test_bit_alloc_without_curves_is_a_config_error(make_config: Callable[..., Path],
                                                    random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    config = make_config(quant=_quant(3, hooks="[dict(type='QuantCalibHook'), dict(type='BitAllocHook')]"),
                         name="no_curves")
    argv = [str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")), "--work-dir", str(tmp_path / "w")]
    tool_fails(run_test_tool, argv, ConfigError, "RDCurvesHook", tmp_path / "w")


def test_both_allocates_weights_and_activations_around_per_level_heads(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    base = "retinanet_r50_narrow_digits.py"
    rdoq = ("rdoq=dict(target='both', target_rates=[3], act_rate=4, weight_bits=list(range(9)), "
            "weight_ratios=[1.0], act_bits=[2, 4, 6, 8], act_ratios=[1.0], weight_group=16, act_group=16, "
            "projections=1)")
    quant = f"quant = dict(calibrate=2, calib=dict(samples_per_gpu=2), recon=None, {rdoq})"
    quant += "\nmodel = dict(test_cfg=dict(score_thr=0.001))"  # an untrained RetinaNet scores ~0.01
    report = _run(make_config(base, quant=quant, name="rdoq_both"), random_checkpoint(base), tmp_path / "w")
    chosen = report["rdoq"]["rates"][0]
    assert chosen["kind_bits"]["weight"] <= 3.0 + 1e-9 and chosen["kind_bits"]["act"] <= 4.0 + 1e-9
    assert chosen["avg_bits"] == pytest.approx(chosen["kind_bits"]["weight"])
    bits = report["rdoq"]["applied"]["layer_bits"]
    # RetinaHead quantizes its inputs per pyramid level: they keep 4 bits; its weights are allocated.
    assert "bbox_head.retina_cls:weight" in bits and "bbox_head.retina_cls:act" not in bits
    assert "neck.fpn_convs.0.conv:act" in bits
    assert len({v for k, v in bits.items() if k.endswith(":act")}) > 1


def test_curve_tool_reads_only_the_images_its_curves_use(make_config: Callable[..., Path],
                                                         random_checkpoint: Callable[[str], Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mmdet_ext.quantize

    read: list[int] = []
    original = mmdet_ext.quantize.calib_batches
    monkeypatch.setattr(mmdet_ext.quantize, "calib_batches",
                        lambda *a, **k: read.append(len(b := original(*a, **k))) or b)  # type: ignore[func-returns-value]
    config = make_config(quant=_quant(3).replace("calibrate=4", "calibrate=8"), name="rdoq_testsize")
    info = gen_rd_curves([str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")),
                          "--work-dir", str(tmp_path / "w"), "--testsize", "2"])
    assert info["images"] == 2 and read == [1]  # one 2-image batch read, of the 8 calibration images
