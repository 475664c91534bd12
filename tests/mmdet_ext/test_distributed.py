"""tools/dist_test.sh with 2 CPU processes (torchrun, gloo) quantizes and evaluates end to end,
and gives the same quantized model as tools/test.py in one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

QUANT = "quant = dict(calibrate=6, calib=dict(samples_per_gpu=2), recon=dict(iters=4, batch_size=1))"


def test_two_cpu_processes(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],
                           tmp_path: Path) -> None:
    config = make_config(quant=QUANT, name="dist")
    work = tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PORT": "29517"}
    out = subprocess.run([str(REPO / "tools" / "dist_test.sh"), str(config),
                          str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")), "2", "--work-dir", str(work)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((work / "report.json").read_text())
    assert report["world_size"] == 2 and set(report["quant"]) == {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"}
    assert set(report["fp"]) == {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"}
    assert len(report["recon_units"]) == 32
    ckpt = torch.load(work / "quantized.pth", weights_only=True)
    assert ckpt["meta"]["format"].startswith("rdoq-plugins/")
    alone = tmp_path / "alone"
    out = subprocess.run([sys.executable, str(REPO / "tools" / "test.py"), str(config),
                          str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")), "--work-dir", str(alone),
                          "--skip-fp"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    single = torch.load(alone / "quantized.pth", weights_only=True)["state_dict"]
    shared = ckpt["state_dict"]
    assert single.keys() == shared.keys()
    worst = max(float((single[k].float() - shared[k].float()).abs().max()) for k in single)
    assert worst < 1e-4, worst  # 3 global batches of 2 images: rank 0 holds two, rank 1 one
    report_alone = json.loads((alone / "report.json").read_text())
    assert abs(report_alone["quant"]["bbox_mAP"] - report["quant"]["bbox_mAP"]) <= 0.002
