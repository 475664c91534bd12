"""The embedded benchmark: FP, min-max PTQ, QDrop and RDOQ (with and without QDrop) on the bundled
detectors, one table.

Each run is a separate ``tools/test.py`` process (so its peak memory is its own) with its own work
dir under ``work_dirs/bench``; finished runs are reused, so an interrupted bench resumes. RDOQ rows
of one model share their RD curves (computed once, by the first row that needs them). Writes
``bench/results.json``: a list of rows with ``model, method, w_bits, a_bits, bbox_mAP,
bbox_mAP_50, time_s, peak_rss_mb`` (+ ``curve_time_s, alloc_time_s, avg_w_bits, avg_a_bits`` for RDOQ
rows; ``rdoq-both`` rows allocate the activations too, at an average of ``a_bits``).

    python -m rdoq_bench.run_mmdet [--models faster_rcnn retinanet] [--methods minmax qdrop rdoq ...]
                                   [--bits 4 3 2] [--iters 500] [--calibrate 64]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from rdoq_bench import recon_iters

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "faster_rcnn": ("configs/bench/faster_rcnn_r50_narrow_digits.py", "checkpoints/faster_rcnn_r50_narrow_digits.pth"),
    "retinanet": ("configs/bench/retinanet_r50_narrow_digits.py", "checkpoints/retinanet_r50_narrow_digits.pth"),
}
METHODS = ("minmax", "qdrop", "rdoq", "rdoq+qdrop", "rdoq-both", "rdoq-both+qdrop", "rdoq-logits", "rdoq-measured",
           "minmax-official", "qdrop-official")
# ``-official`` rows follow QDrop's own detection protocol (configs/mmdet/_base_/qdrop_official_w4a4.py):
# the heads stay FP (so do the FPN outputs they read), 2-image train batches drawn with seed 1005.
OFFICIAL = {"heads": False, "calib": {"split": "train", "samples_per_gpu": 2, "seed": 1005}}
MEASURED_BITS = (4, 3)  # rdoq-logits / -measured run at these average weight bits only (curves are shared)
# RDOQ rows price the class outputs as scores (the default rd_target), except these two, which compare
# the second-order and measured estimators on the logits (measured curves on the scores: not run yet).
LOGIT_METHODS = ("rdoq-logits", "rdoq-measured")
MINMAX_W = {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "ch_axis": 0}
MINMAX_A = {"quantizer": "FixedFakeQuantize", "observer": "AvgMinMaxObserver"}
# RD curve settings shared by every RDOQ row (so rdoq and rdoq-measured price the same candidates).
RD_CURVES = {"weight_group": 16, "weight_bits": list(range(9)), "weight_ratios": [1.0, 0.8], "calib_images": 4,
             "projections": 8}
# rdoq-both rows also allocate the layer inputs, at an average of the row's activation bits (8-channel
# groups, 2-8 bits); per-level head inputs keep their uniform bits.
RD_ACTS = {"target": "both", "act_bits": list(range(2, 9))}


def quant_section(model: str, method: str, w_bits: int, a_bits: int, iters: int,
                  calibrate: int) -> dict[str, Any]:
    """The quant config of one bench row (first conv: 8-bit weights, FP image, as QDrop)."""
    section: dict[str, Any] = {
        "calibrate": calibrate,
        "overrides": {"backbone.conv1": {"w_qconfig": {"bit": 8}, "a_qconfig": None}},
    }
    recon = "qdrop" in method
    if recon:
        # Every unit is reconstructed, the heads too. Since units are ConvModules (conv + ReLU), RetinaNet
        # QDrop W4A4 reconstructs its head to 0.614, against 0.604 with the head left out (recon.exclude)
        # and 0.585 with each tower conv fitted on its pre-ReLU output.
        # Weights start from the official 2-D search, as in the QDrop presets (qdrop_w4a4.py).
        section.update(w_qconfig={"bit": w_bits, "observer": "GridMSEObserver"}, a_qconfig={"bit": a_bits},
                       recon={"iters": iters, "keep_gpu": False})
        # RetinaHead (focal loss): QDrop's Lp-optimal ranges clip the tower and predictor outliers the
        # scores depend on (MSE-initialised W4A4 PTQ: 0.461 vs min-max 0.553), so the head starts from
        # min-max ranges. Faster R-CNN has no top-level bbox_head, and an override that matches no
        # layer is an error.
        if model == "retinanet" and not method.endswith("-official"):
            section["overrides"][r"re:bbox_head\..*"] = {"w_qconfig": {"observer": "MinMaxObserver"},
                                                          "a_qconfig": {"observer": "AvgMinMaxObserver"}}
    else:
        section.update(w_qconfig={**MINMAX_W, "bit": w_bits}, a_qconfig={**MINMAX_A, "bit": a_bits}, recon=None)
    if method.endswith("-official"):
        section.update(OFFICIAL)
    hooks = [{"type": "QuantCalibHook"}]
    if method.startswith("rdoq"):
        estimator = "measured" if method == "rdoq-measured" else "second_order"
        section["rdoq"] = {**RD_CURVES, "estimator": estimator, "target": "weight", "target_rates": [w_bits],
                           "solver": "dp"}
        if method.startswith("rdoq-both"):
            section["rdoq"].update(RD_ACTS, act_rate=a_bits)
        if method in LOGIT_METHODS:
            section["rd_target"] = "logits"
        hooks += [{"type": "RDCurvesHook"}, {"type": "BitAllocHook"}]
    if recon:
        hooks.append({"type": "QDropReconHook"})
    section["hooks"] = hooks
    return section


def work_dir(model: str, method: str, w_bits: int, a_bits: int, args: argparse.Namespace, suffix: str = "") -> Path:
    """One folder per row and settings (a changed setting never reuses a stale result)."""
    iters = f"_i{args.iters}{suffix}" if "qdrop" in method else ""
    target = "_scores" if method.startswith("rdoq") and method not in LOGIT_METHODS else ""
    name = "rdoq" if method == "rdoq-logits" else method.replace("+", "_")  # the rows from before rd_target
    return args.work_root / f"{model}_{name}_w{w_bits}a{a_bits}_c{args.calibrate}{iters}{target}"


def run(model: str, method: str, w_bits: int, a_bits: int, args: argparse.Namespace,
        need_fp: bool, recon: dict[str, Any] | None = None, suffix: str = "") -> dict[str, Any] | None:
    """The row's report, running it first unless it exists (or ``--no-run``: None).

    ``recon`` adds keys to the row's ``recon`` section; ``suffix`` names that variant's work dir.
    """
    config, ckpt = MODELS[model]
    work = work_dir(model, method, w_bits, a_bits, args, suffix)
    report_file = work / "report.json"
    if not report_file.is_file() and args.no_run:
        return None
    if not report_file.is_file():
        section = quant_section(model, method, w_bits, a_bits, args.iters, args.calibrate)
        if recon:
            section["recon"].update(recon)
        if "rdoq" in section:  # one curve folder per model and estimator, shared by its rows
            shared = args.work_root / f"{model}_rd_curves_{section['rdoq']['estimator']}"
            shared.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            link = work / "rd_curves"
            if not link.exists():
                link.symlink_to(shared.resolve(), target_is_directory=True)
        qfile = args.work_root / f"{work.name}.yaml"
        qfile.parent.mkdir(parents=True, exist_ok=True)
        qfile.write_text(yaml.safe_dump(section))
        cmd = [sys.executable, str(REPO / "tools" / "test.py"), config, ckpt, "--work-dir", str(work),
               "--quant-config", str(qfile), "--eval", "bbox", *([] if need_fp else ["--skip-fp"])]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(report_file.read_text())


def row(model: str, method: str, w_bits: int, report: dict[str, Any]) -> dict[str, Any]:
    t = report["time_s"]
    out = {"model": model, "method": method, "w_bits": w_bits, "a_bits": 4,
           "bbox_mAP": report["quant"]["bbox_mAP"], "bbox_mAP_50": report["quant"]["bbox_mAP_50"],
           "time_s": round(sum(t.get(k, 0.0) for k in ("calibrate", "curves", "allocate", "reconstruct")), 1),
           "peak_rss_mb": report["peak_rss_mb"]}
    if "qdrop" in method:
        units = report.get("recon_units") or {}
        out.update(iters=(report.get("recon_cache") or {}).get("iters"),
                   mean_unit_iters=round(sum(u["iters"] for u in units.values()) / max(1, len(units)), 1))
    if "rdoq" in report:
        rd = report["rdoq"]
        chosen = next(r for r in rd["rates"] if r["target_rate"] == rd["apply_rate"])
        out.update(distortion_target="logits" if method in LOGIT_METHODS else "scores",
                   curve_time_s=rd["curves"].get("compute_time_s"), alloc_time_s=chosen["solver_time_s"],
                   avg_w_bits=round(chosen["avg_bits"], 3),
                   avg_a_bits=round(chosen["kind_bits"]["act"], 3) if "act" in chosen.get("kind_bits", {}) else None,
                   predicted_distortion=chosen["predicted_distortion"],
                   measured_distortion=chosen["measured_distortion"])
    return out


def row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a row distinct: model, method, bits, and a sweep row's settings."""
    sweep = r.get("sweep")
    return (r["model"], r["method"], r["w_bits"], r["a_bits"], sweep, r.get("iters") if sweep else None,
            str(r.get("early_stop")) if sweep else None)


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each row ``new`` also has replaced in place, then the rows only ``new`` has."""
    fresh = {row_key(r): r for r in new}
    merged = [fresh.pop(row_key(r), r) for r in old]
    return merged + [r for r in new if row_key(r) in fresh]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--bits", nargs="+", type=int, default=[4, 3, 2], help="weight bits (activations: 4)")
    parser.add_argument("--iters", type=int, default=500, help="QDrop iterations per unit")
    parser.add_argument("--calibrate", type=int, default=64, help="calibration images")
    parser.add_argument("--work-root", type=Path, default=REPO / "work_dirs" / "bench")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--no-run", action="store_true", help="only collect the rows that already ran")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --out that this run does not produce (same model, method, bits, iters)")
    parser.add_argument("--sweep-iters", nargs="*", type=int, default=list(recon_iters.ITERS),
                        help="Faster R-CNN QDrop W4A4 at these iterations per unit + one early-stop run "
                             "(bench/recon_iters.png); none: skip")
    parser.add_argument("--sweep-early-stop", type=int, default=max(recon_iters.ITERS), metavar="MAX_ITERS",
                        help="the sweep's early-stop run: at most this many iterations per unit (0: none)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for model in args.models:
        fp_added = False
        for old in sorted(args.work_root.glob(f"{model}_*/report.json")):  # FP once per model
            fp = json.loads(old.read_text()).get("fp")
            if fp and not fp_added:
                rows.append({"model": model, "method": "fp", "w_bits": 32, "a_bits": 32, **fp,
                             "time_s": json.loads(old.read_text())["time_s"].get("eval_fp"), "peak_rss_mb": None})
                fp_added = True
        for w_bits in args.bits:
            for method in args.methods:
                if method in ("rdoq-logits", "rdoq-measured") and w_bits not in MEASURED_BITS:
                    continue
                report = run(model, method, w_bits, 4, args, need_fp=not fp_added)
                if report is None:
                    continue
                if not fp_added and report.get("fp"):
                    rows.append({"model": model, "method": "fp", "w_bits": 32, "a_bits": 32, **report["fp"],
                                 "time_s": report["time_s"].get("eval_fp"), "peak_rss_mb": None})
                    fp_added = True
                rows.append(row(model, method, w_bits, report))
    if args.sweep_iters and recon_iters.MODEL in args.models:
        def run_row(iters: int, recon: dict[str, Any] | None, suffix: str) -> dict[str, Any] | None:
            swept = argparse.Namespace(**{**vars(args), "iters": iters})
            report = run(recon_iters.MODEL, recon_iters.METHOD, recon_iters.W_BITS, recon_iters.A_BITS, swept,
                         need_fp=False, recon=recon, suffix=suffix)
            return None if report is None else row(recon_iters.MODEL, recon_iters.METHOD, recon_iters.W_BITS, report)

        swept_rows = recon_iters.sweep(run_row, tuple(args.sweep_iters), args.sweep_early_stop)
        rows += swept_rows
        if swept_rows:
            recon_iters.plot(swept_rows, args.out.parent / "recon_iters.png")
    if args.merge and args.out.is_file():
        rows = merge_rows(json.loads(args.out.read_text()), rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'model':<13}{'method':<17}{'W/A':>7}{'avg W':>7}{'avg A':>7}{'mAP':>8}{'AP50':>8}{'time s':>9}"
          f"{'curves s':>10}{'RSS MB':>8}")
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        curves = f"{r['curve_time_s']:.1f}" if r.get("curve_time_s") is not None else "-"
        avg_w, avg_a = (f"{r[k]:.2f}" if r.get(k) is not None else "-" for k in ("avg_w_bits", "avg_a_bits"))
        print(f"{r['model']:<13}{r['method']:<17}{r['w_bits']:>4}/{r['a_bits']:<2}{avg_w:>7}{avg_a:>7}"
              f"{r['bbox_mAP']:>8.3f}{r['bbox_mAP_50']:>8.3f}{r['time_s'] or 0:>9.1f}{curves:>10}{rss:>8}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
