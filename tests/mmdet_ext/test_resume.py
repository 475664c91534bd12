"""A run killed during reconstruction resumes after the last finished unit and ends exactly where
an uninterrupted run ends, leaving no spilled cache behind; a resumed run's report counts the time
and the number of every attempt; the quantized checkpoint evaluates again without re-calibration."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rdoq_plugins.recon import QDropReconstructor
from rdoq_plugins.recon.cache import SPILL_PREFIX
from tools.test import main as run_test_tool

QUANT = "quant = dict(calibrate=4, calib=dict(samples_per_gpu=2), recon=dict(iters=4, batch_size=1))"


def _run(config: Path, ckpt: Path, work: Path, *extra: str) -> dict:
    return run_test_tool([str(config), str(ckpt), "--work-dir", str(work), "--skip-fp", *extra])


def test_killed_run_resumes_to_the_same_model(make_config: Callable[..., Path],
                                              random_checkpoint: Callable[[str], Path],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No cache memory: every unit's cache spills to the work dir.
    spilling = QUANT[:-1] + ", hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook', cache_gb=0)])"
    config, ckpt = make_config(quant=spilling, name="resume"), random_checkpoint("faster_rcnn_r50_narrow_digits.py")
    full = _run(config, ckpt, tmp_path / "full")

    calls = {"n": 0}
    original = QDropReconstructor.__call__

    def dies_on_the_fifth_unit(self: QDropReconstructor, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QDropReconstructor, "__call__", dies_on_the_fifth_unit)
    with pytest.raises(KeyboardInterrupt):
        _run(config, ckpt, tmp_path / "resumed")
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["quant_state"]  # no half outputs
    state = torch.load(tmp_path / "resumed" / "quant_state" / "state.pth", weights_only=True)
    assert len(state["done_units"]) == 4
    spill = tmp_path / "resumed" / "quant_state" / "spill_rank0"
    assert list(spill.iterdir()) == []  # the interrupted unit's spill is gone
    stale = spill / f"{SPILL_PREFIX}killed"  # what a SIGKILL leaves: the next run removes it
    stale.mkdir()
    (stale / "000000.pt").write_bytes(b"0" * 1024)
    monkeypatch.setattr(QDropReconstructor, "__call__", original)

    resumed = _run(config, ckpt, tmp_path / "resumed")
    assert list(spill.iterdir()) == []
    report = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert report["recon_cache"]["disk_needed_gb"] > 0 and report["recon_cache"]["tiers"]["host_gb"] == 0
    assert all(u["cache"]["bytes_disk"] > 0 for u in report["recon_units"].values() if "cache" in u)
    assert resumed["quant"] == full["quant"]
    a = torch.load(tmp_path / "full" / "quantized.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "quantized.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_quantized_checkpoint_evaluates_without_recalibration(make_config: Callable[..., Path],
                                                              random_checkpoint: Callable[[str], Path],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An untrained RetinaNet scores about 0.01 (its prior): a lower threshold keeps boxes to evaluate.
    config = make_config(base="retinanet_r50_narrow_digits.py", name="retina",
                         quant=QUANT + "\nmodel = dict(test_cfg=dict(score_thr=0.001))")
    first = _run(config, random_checkpoint("retinanet_r50_narrow_digits.py"), tmp_path / "q")
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["quant"] == first["quant"] and report["method"] == "qdrop"
    assert report["bits"] == {"weight_avg": 4.0, "act_avg": 4.0}
    assert report["size_bytes"]["quant"] < report["size_bytes"]["fp32"] / 6

    import rdoq_plugins.workflow.calibrate as calibrate_module

    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: pytest.fail("re-calibrated"))
    again = run_test_tool([str(config), str(tmp_path / "q" / "quantized.pth"), "--work-dir", str(tmp_path / "eval")])
    assert again["quant"] == first["quant"] and again["fp"] == {}


def test_a_resumed_runs_report_sums_the_time_of_every_attempt(make_config: Callable[..., Path],
                                                              random_checkpoint: Callable[[str], Path],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rdoq_plugins.workflow.calibrate as calibrate_module
    import tools.test

    config = make_config(quant="quant = dict(calibrate=2, calib=dict(samples_per_gpu=2), recon=None)", name="ptq")
    ckpt, work = random_checkpoint("faster_rcnn_r50_narrow_digits.py"), tmp_path / "work"
    original = tools.test.evaluate

    def killed(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(tools.test, "evaluate", killed)  # the first attempt dies after calibration
    with pytest.raises(KeyboardInterrupt):
        _run(config, ckpt, work)
    first = torch.load(work / "quant_state" / "state.pth", weights_only=True)
    assert first["stage"] == "calibrated" and first["attempts"] == 1
    assert first["timings"]["calibrate"] > 0 and first["timings"]["prepare"] > 0

    monkeypatch.setattr(tools.test, "evaluate", original)
    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: pytest.fail("re-calibrated"))
    _run(config, ckpt, work)
    report = json.loads((work / "report.json").read_text())
    assert report["attempts"] == 2
    assert report["time_s"]["calibrate"] == round(first["timings"]["calibrate"], 2)  # the first attempt's
    assert report["time_s"]["prepare"] > round(first["timings"]["prepare"], 2)  # both attempts'
