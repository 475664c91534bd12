"""The embedded benchmark: FP, min-max PTQ and QDrop on the bundled detectors, one table.

Each run is a separate ``tools/test.py`` process (so its peak memory is its own) with its own work
dir under ``work_dirs/bench``; finished runs are reused, so an interrupted bench resumes. Writes
``bench/results.json``: a list of rows with ``model, method, w_bits, a_bits, bbox_mAP,
bbox_mAP_50, time_s, peak_rss_mb``.

    python tools/bench.py [--models faster_rcnn retinanet] [--bits 4 2] [--iters 500]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "faster_rcnn": ("configs/bench/faster_rcnn_r50_narrow_digits.py", "checkpoints/faster_rcnn_r50_narrow_digits.pth"),
    "retinanet": ("configs/bench/retinanet_r50_narrow_digits.py", "checkpoints/retinanet_r50_narrow_digits.pth"),
}
MINMAX = {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver"}
MINMAX_A = {"quantizer": "FixedFakeQuantize", "observer": "AvgMinMaxObserver"}


def quant_section(method: str, w_bits: int, a_bits: int, iters: int, calibrate: int) -> dict[str, Any]:
    """The quant config of one bench row (first conv: 8-bit weights, FP image, as QDrop)."""
    section: dict[str, Any] = {
        "calibrate": calibrate,
        "overrides": {"backbone.conv1": {"w_qconfig": {"bit": 8}, "a_qconfig": None}},
    }
    if method == "minmax":
        section.update(w_qconfig={**MINMAX, "bit": w_bits, "ch_axis": 0}, a_qconfig={**MINMAX_A, "bit": a_bits},
                       recon=None, hooks=[{"type": "QuantCalibHook"}])
    else:
        section.update(w_qconfig={"bit": w_bits}, a_qconfig={"bit": a_bits},
                       recon={"iters": iters, "keep_gpu": False},
                       hooks=[{"type": "QuantCalibHook"}, {"type": "QDropReconHook"}])
    return section


def run(model: str, method: str, w_bits: int, a_bits: int, args: argparse.Namespace) -> dict[str, Any]:
    config, ckpt = MODELS[model]
    work = args.work_root / f"{model}_{method}_w{w_bits}a{a_bits}"
    report_file = work / "report.json"
    if not report_file.is_file():
        qfile = args.work_root / f"{work.name}.yaml"
        qfile.parent.mkdir(parents=True, exist_ok=True)
        qfile.write_text(yaml.safe_dump(quant_section(method, w_bits, a_bits, args.iters, args.calibrate)))
        cmd = [sys.executable, str(REPO / "tools" / "test.py"), config, ckpt, "--work-dir", str(work),
               "--quant-config", str(qfile), "--eval", "bbox"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(report_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--bits", nargs="+", type=int, default=[4, 2], help="weight bits (activations: 4)")
    parser.add_argument("--iters", type=int, default=500, help="QDrop iterations per unit")
    parser.add_argument("--calibrate", type=int, default=64, help="calibration images")
    parser.add_argument("--work-root", type=Path, default=REPO / "work_dirs" / "bench")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for model in args.models:
        fp_added = False
        for w_bits in args.bits:
            for method in ("minmax", "qdrop"):
                report = run(model, method, w_bits, 4, args)
                if not fp_added:
                    rows.append({"model": model, "method": "fp", "w_bits": 32, "a_bits": 32, **report["fp"],
                                 "time_s": report["time_s"].get("eval_fp"), "peak_rss_mb": None})
                    fp_added = True
                t = report["time_s"]
                rows.append({"model": model, "method": method, "w_bits": w_bits, "a_bits": 4,
                             "bbox_mAP": report["quant"]["bbox_mAP"], "bbox_mAP_50": report["quant"]["bbox_mAP_50"],
                             "time_s": round(t.get("calibrate", 0) + t.get("reconstruct", 0), 1),
                             "peak_rss_mb": report["peak_rss_mb"]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'model':<13}{'method':<8}{'W/A':>7}{'mAP':>8}{'AP50':>8}{'time s':>9}{'RSS MB':>9}")
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        print(f"{r['model']:<13}{r['method']:<8}{r['w_bits']:>4}/{r['a_bits']:<2}{r['bbox_mAP']:>8.3f}"
              f"{r['bbox_mAP_50']:>8.3f}{r['time_s'] or 0:>9.1f}{rss:>9}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
