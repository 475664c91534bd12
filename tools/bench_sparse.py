"""The sparse-detector benchmark: FP, min-max PTQ, QDrop, RDOQ and RDOQ+QDrop on a VoxelNeXt-shaped
toy detector, one table (issue "OpenPCDet plugin", item 7).

The model and the data come from ``tests/pcdet_ext/voxelnext_toy.py`` (imported from the tests
folder: the repository root is put on ``sys.path``): a spconv detector with VoxelNeXt's module
structure and names, synthetic ray-cast LiDAR scenes and a BEV detection metric (center-distance AP
at 0.5 / 1 / 2 m, mean over car / truck / pedestrian: ``bev_mAP``). No OpenPCDet and no GPU needed.

Steps:

1. the FP toy is trained on CPU on a seeded *train* split of scenes (``--train-scenes``, scene
   seed ``--seed``) for ``--steps`` Adam steps and cached in ``<work-root>/fp.pth`` (a rerun with the
   same training settings skips training); it is evaluated on a disjoint *val* split (scene seed
   ``--seed + 1``; the toy draws scene ``i`` of split seed ``s`` from ``s * 100003 + i``, so the two
   splits never share a scene);
2. every row quantizes the BN-folded FP model with :func:`pcdet_ext.quantize_sparse_detector`,
   calibrating (and reconstructing) on the first ``--calib-scenes`` train scenes, batches of 2:

   * ``minmax``: FixedFakeQuantize, MinMaxObserver per output channel (weights) and
     AvgMinMaxObserver per tensor (activations); no reconstruction;
   * ``qdrop``: AdaRound weights (MSEObserver, per channel), LSQ activations (AvgMSEFastObserver),
     QDrop reconstruction of every unit (``--iters`` per unit);
   * ``rdoq``: the min-max quantizers, then weight bits allocated per group of ``weight_group``
     output channels from second-order RD curves with the exact DP at an average of ``w_bits``
     (activations stay uniform at ``a_bits``); no reconstruction;
   * ``rdoq+qdrop``: the QDrop quantizers, the RDOQ allocation, then QDrop reconstruction.

   As QDrop, the first layer (``backbone_3d.conv_input.0``, raw point features in) keeps 8-bit
   weights and activations in every row and is not allocated. RDOQ rows allocate every rate of
   ``--rd-rates`` (plus ``w_bits``) for the additivity check (predicted vs measured head-output
   distortion, Pearson over the rates) and apply the ``w_bits`` one. All RDOQ rows share one set
   of RD curves (they depend on the FP weights and the calibration data only), computed by the
   first RDOQ row, so its ``curve_time_s`` is the real cost and later rows report ~0;
3. every row records ``model, method, w_bits, a_bits, sqnr_db`` (head outputs vs FP on the val
   scenes: each of the 10 head outputs' SQNR with energies summed over the val scenes, averaged in
   dB; ``sqnr_min_db`` is the worst output), ``bev_mAP`` (+ ``bev_AP`` per class), ``time_s``
   (quantization: calibration, curves, allocation, additivity check, reconstruction; for FP the
   val evaluation), ``eval_time_s``, ``peak_rss_mb`` (each row runs in its own process), and for
   RDOQ rows ``curve_time_s, alloc_time_s, avg_w_bits`` (allocated layers; ``w_avg_all`` counts the
   8-bit first layer too), ``predicted_distortion, measured_distortion`` (the applied rate) and
   ``additivity`` (every rate, with ``pearson`` and ``pearson_log`` of the log distortions).

Results are cached per row in ``<work-root>/<row>.json`` together with the settings that produced
them; a rerun reuses a row whose settings match and recomputes it otherwise, so an interrupted bench
resumes. Writes the rows to ``--out`` (``bench/results_sparse.json``) and prints a table.

The defaults are sized for about 20-25 minutes on one CPU thread with the full-width toy
(channels 16-32-64-128-128, two residual blocks per stage, 7.5 M parameters): 300 training steps
on 96 scenes, 64 val scenes, 8 calibration scenes, 40 reconstruction iterations per unit, rows
W4A8, W3A8 and W4A4 (13 rows; FP training ~4 min, a QDrop row ~2 min, the others under 40 s).
``--narrow`` uses the toy's narrow copy (channels 8-16-16-32-32, out 32) for a quicker run;
``--iters`` / ``--steps`` trade time for accuracy (QDrop's paper uses 20000 iterations per block).

    OMP_NUM_THREADS=1 python tools/bench_sparse.py [--methods fp minmax qdrop rdoq rdoq+qdrop]
        [--bits W4A8 W3A8 W4A4] [--steps 300] [--iters 40] [--narrow] [--out bench/results_sparse.json]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for ``tests.pcdet_ext.voxelnext_toy``

METHODS = ("fp", "minmax", "qdrop", "rdoq", "rdoq+qdrop")
MODEL = "voxelnext_toy"
FIRST_LAYER = "backbone_3d.conv_input.0"
MINMAX_W = {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "ch_axis": 0}
MINMAX_A = {"quantizer": "FixedFakeQuantize", "observer": "AvgMinMaxObserver"}
QDROP_W = {"quantizer": "AdaRoundFakeQuantize", "observer": "MSEObserver", "ch_axis": 0}
QDROP_A = {"quantizer": "LSQFakeQuantize", "observer": "AvgMSEFastObserver"}
# RD curve settings shared by every RDOQ row.
RD_CURVES = {"estimator": "second_order", "target": "weight", "solver": "dp", "weight_group": 8,
             "weight_bits": list(range(9)), "weight_ratios": [1.0, 0.8], "projections": 4}
CALIB_BATCH = 2  # scenes per calibration batch (a reconstruction step reads one whole batch)


# ---------------------------------------------------------------------------------------------
# Settings and caching
# ---------------------------------------------------------------------------------------------
def parse_bits(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"[wW](\d+)[aA](\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected W<bits>A<bits> (e.g. W4A8), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def fp_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What the FP checkpoint depends on."""
    return {"narrow": args.narrow, "blocks": args.blocks, "steps": args.steps, "lr": args.lr,
            "train_scenes": args.train_scenes, "seed": args.seed, "train_batch": args.train_batch}


def row_settings(method: str, w_bits: int, a_bits: int, args: argparse.Namespace) -> dict[str, Any]:
    """What a row's result depends on (a cached row is reused only if these match)."""
    out: dict[str, Any] = {"fp": fp_settings(args), "val_scenes": args.val_scenes, "method": method}
    if method != "fp":
        out.update(w_bits=w_bits, a_bits=a_bits, calib_scenes=args.calib_scenes)
    if "qdrop" in method:
        out["iters"] = args.iters
    if method.startswith("rdoq"):
        out["rd"] = {**RD_CURVES, "rates": rd_rates(w_bits, args)}
    return out


def rd_rates(w_bits: int, args: argparse.Namespace) -> list[float]:
    return sorted({float(r) for r in args.rd_rates} | {float(w_bits)})


def row_name(method: str, w_bits: int, a_bits: int) -> str:
    return "fp" if method == "fp" else f"{method.replace('+', '_')}_w{w_bits}a{a_bits}"


def digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Work inside one process
# ---------------------------------------------------------------------------------------------
def _setup() -> Any:
    import torch

    import pcdet_ext

    torch.set_num_threads(1)
    pcdet_ext.apply_cpu_patches()
    from tests.pcdet_ext import voxelnext_toy as toy

    return toy


def _splits(toy: Any, args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """Train and val scenes: disjoint seeds (see the module docstring)."""
    return toy.make_scenes(args.train_scenes, seed=args.seed), toy.make_scenes(args.val_scenes, seed=args.seed + 1)


def train_fp(args: argparse.Namespace) -> None:
    """Trains the FP toy and saves ``fp.pth`` (unless one with the same settings exists)."""
    import torch

    path = args.work_root / "fp.pth"
    settings = fp_settings(args)
    if path.is_file():
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
        if meta.get("settings") == settings:
            print(f"FP checkpoint {path} reused (trained in {meta['train_time_s']:.0f} s)", flush=True)
            return
        print(f"FP checkpoint {path} has other settings; retraining", flush=True)
    toy = _setup()
    train, _ = _splits(toy, args)
    model = toy.build_toy(seed=args.seed, narrow=args.narrow, blocks=args.blocks)
    print(f"training the FP toy: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{args.steps} steps on {len(train)} scenes", flush=True)
    start = time.perf_counter()
    losses = toy.train_toy(model, train, steps=args.steps, batch_size=args.train_batch, lr=args.lr, seed=args.seed,
                           log_every=max(1, args.steps // 6))
    elapsed = time.perf_counter() - start
    from rdoq_plugins.files import atomic_save

    path.parent.mkdir(parents=True, exist_ok=True)
    final = sum(losses[-20:]) / max(len(losses[-20:]), 1)
    atomic_save({"state_dict": model.state_dict(),
                 "meta": {"settings": settings, "train_time_s": elapsed, "final_loss": final}}, path)
    print(f"trained in {elapsed:.0f} s, final loss {final:.4f}; saved {path}", flush=True)


def quant_config(method: str, w_bits: int, a_bits: int, args: argparse.Namespace) -> dict[str, Any]:
    recon = "qdrop" in method
    w, a = (QDROP_W, QDROP_A) if recon else (MINMAX_W, MINMAX_A)
    cfg: dict[str, Any] = {
        "w_qconfig": {**w, "bit": w_bits}, "a_qconfig": {**a, "bit": a_bits}, "calibrate": args.calib_scenes,
        "recon": {"iters": args.iters, "keep_gpu": False} if recon else None,
        "overrides": {FIRST_LAYER: {"w_qconfig": {"bit": 8}, "a_qconfig": {"bit": 8}}},
    }
    if method.startswith("rdoq"):
        cfg["rdoq"] = {**RD_CURVES, "target_rates": rd_rates(w_bits, args), "apply_rate": float(w_bits)}
    return cfg


def _sqnr(fp_outs: list[list[Any]], q_outs: list[list[Any]]) -> list[float]:
    """Per head output: 10 log10(signal / error), energies summed over every val batch."""
    sig = [0.0] * len(fp_outs[0])
    err = [0.0] * len(fp_outs[0])
    for f_batch, q_batch in zip(fp_outs, q_outs):
        for i, (f, q) in enumerate(zip(f_batch, q_batch)):
            sig[i] += float(f.double().pow(2).sum())
            err[i] += float((f.double() - q.double()).pow(2).sum())
    return [10 * math.log10(s / max(e, 1e-30)) for s, e in zip(sig, err)]


def _log_pearson(add: dict[str, Any]) -> float | None:
    """Pearson of log predicted vs log measured distortion (the linear one leans on the lowest rate)."""
    import numpy as np

    p, m = np.asarray(add["predicted"], dtype=float), np.asarray(add["measured"], dtype=float)
    if len(p) < 2 or (p <= 0).any() or (m <= 0).any() or np.log(p).std() == 0 or np.log(m).std() == 0:
        return None
    return float(np.corrcoef(np.log(p), np.log(m))[0, 1])


def run_row(method: str, w_bits: int, a_bits: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row, in this process."""
    import torch

    from pcdet_ext.runner import quantize_sparse_detector
    from rdoq_plugins import fuse_conv_bn, load_quant_config
    from rdoq_plugins.report import peak_rss_mb

    toy = _setup()
    ckpt = torch.load(args.work_root / "fp.pth", map_location="cpu", weights_only=True)
    fp = toy.build_toy(seed=args.seed, narrow=args.narrow, blocks=args.blocks)
    fp.load_state_dict(ckpt["state_dict"])
    fp = fuse_conv_bn(fp.eval())
    train, val = _splits(toy, args)
    val_batches = toy.batches_of(val, args.eval_batch)
    out: dict[str, Any] = {"model": MODEL, "method": method, "w_bits": 32 if method == "fp" else w_bits,
                           "a_bits": 32 if method == "fp" else a_bits}
    with torch.no_grad():
        fp_outs = [toy.head_outputs(fp, b) for b in val_batches]
    if method == "fp":
        model = fp
        out["time_s"] = None
        out["train_time_s"] = round(ckpt["meta"]["train_time_s"], 1)
    else:
        calib = toy.batches_of(train[: args.calib_scenes], CALIB_BATCH)
        qcfg = load_quant_config(quant_config(method, w_bits, a_bits, args))
        data_key = digest({"fp": fp_settings(args), "calib_scenes": args.calib_scenes})
        start = time.perf_counter()
        model, report = quantize_sparse_detector(
            copy.deepcopy(fp), fp, calib, toy.run_model, toy.head_outputs, qcfg,
            work_dir=args.work_root / "shared", data_key=data_key, images=lambda b: b["batch_size"], seed=args.seed)
        out["time_s"] = round(time.perf_counter() - start, 1)
        out["timings"] = {k: round(v, 2) for k, v in report["timings"].items()}
        out["w_avg_all"] = round(report["bits"]["weight_avg"], 3)
        if "recon" in report:
            out["recon_units"] = len(report["recon"])
        if "rdoq" in report:
            rd = report["rdoq"]
            chosen = next(r for r in rd["rates"] if r["target_rate"] == rd["apply_rate"])
            add = rd["additivity"]
            out.update(curve_time_s=round(rd["timings"]["curves_s"], 2),
                       curves_computed=rd["curves"]["computed"], alloc_time_s=round(chosen["solver_time_s"], 3),
                       avg_w_bits=round(chosen["avg_bits"], 3),
                       predicted_distortion=chosen["predicted_distortion"],
                       measured_distortion=chosen["measured_distortion"],
                       additivity={"rates": add["rates"], "predicted": add["predicted"], "measured": add["measured"],
                                   "pearson": add["pearson"], "pearson_log": _log_pearson(add)})
    start = time.perf_counter()
    metric = toy.evaluate(model, val, batch_size=args.eval_batch)
    out["eval_time_s"] = round(time.perf_counter() - start, 1)
    if method == "fp":
        out["time_s"] = out["eval_time_s"]
        out["sqnr_db"] = out["sqnr_min_db"] = None
    else:
        with torch.no_grad():
            q_outs = [toy.head_outputs(model, b) for b in val_batches]
        sqnr = _sqnr(fp_outs, q_outs)
        out["sqnr_db"] = round(sum(sqnr) / len(sqnr), 2)
        out["sqnr_min_db"] = round(min(sqnr), 2)
    out["bev_mAP"] = round(metric["mAP"], 4)
    out["bev_AP"] = {k: round(v, 4) for k, v in metric["AP"].items()}
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def settings_argv(args: argparse.Namespace) -> list[str]:
    """The command-line settings a row process needs (the same as this process's)."""
    argv = ["--steps", str(args.steps), "--lr", str(args.lr), "--train-scenes", str(args.train_scenes),
            "--train-batch", str(args.train_batch), "--val-scenes", str(args.val_scenes),
            "--calib-scenes", str(args.calib_scenes), "--iters", str(args.iters), "--seed", str(args.seed),
            "--blocks", str(args.blocks), "--eval-batch", str(args.eval_batch), "--work-root", str(args.work_root),
            "--rd-rates", *[str(r) for r in args.rd_rates]]
    return argv + (["--narrow"] if args.narrow else [])


def cached_row(method: str, w_bits: int, a_bits: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """The row's result, running it (in a child process) unless a matching one is cached."""
    path = args.work_root / f"{row_name(method, w_bits, a_bits)}.json"
    settings = row_settings(method, w_bits, a_bits, args)
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") == settings:
            return data["row"]
        print(f"{path.name}: cached with other settings; rerunning", flush=True)
    if args.no_run:
        return None
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", method, "--row-bits", f"W{w_bits}A{a_bits}",
           *settings_argv(args)]
    print(f"+ row {row_name(method, w_bits, a_bits)}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run(cmd, cwd=REPO, check=True, env=env)
    data = json.loads(path.read_text())
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return data["row"]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'method':<12}{'W/A':>7}{'avg W':>7}{'bev_mAP':>9}{'SQNR dB':>9}{'time s':>8}{'curves s':>9}"
          f"{'alloc s':>8}{'pred D':>10}{'meas D':>10}{'pearson':>8}{'RSS MB':>8}")
    for r in rows:
        add = r.get("additivity") or {}
        print(f"{r['method']:<12}{r['w_bits']:>4}/{r['a_bits']:<2}{_fmt(r.get('avg_w_bits'), '.2f'):>7}"
              f"{r['bev_mAP']:>9.4f}{_fmt(r.get('sqnr_db'), '.2f'):>9}{_fmt(r.get('time_s'), '.1f'):>8}"
              f"{_fmt(r.get('curve_time_s'), '.1f'):>9}{_fmt(r.get('alloc_time_s'), '.3f'):>8}"
              f"{_fmt(r.get('predicted_distortion'), '.3g'):>10}{_fmt(r.get('measured_distortion'), '.3g'):>10}"
              f"{_fmt(add.get('pearson'), '.3f'):>8}{_fmt(r.get('peak_rss_mb'), '.0f'):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--bits", nargs="+", type=parse_bits, default=[(4, 8), (3, 8), (4, 4)],
                        help="weight / activation bits per row group, as W4A8 (default: W4A8 W3A8 W4A4)")
    parser.add_argument("--narrow", action="store_true",
                        help="the toy's narrow copy (channels 8-16-16-32-32, out 32) instead of the full width")
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks per stage (VoxelNeXt: 2)")
    parser.add_argument("--steps", type=int, default=300, help="FP training steps")
    parser.add_argument("--lr", type=float, default=3e-3, help="FP training peak learning rate")
    parser.add_argument("--train-scenes", type=int, default=96, help="scenes of the train split")
    parser.add_argument("--train-batch", type=int, default=2, help="scenes per training step")
    parser.add_argument("--val-scenes", type=int, default=64, help="scenes of the val split")
    parser.add_argument("--eval-batch", type=int, default=2, help="scenes per evaluation batch")
    parser.add_argument("--calib-scenes", type=int, default=8,
                        help=f"calibration scenes (the first train scenes, batches of {CALIB_BATCH})")
    parser.add_argument("--iters", type=int, default=40, help="QDrop reconstruction iterations per unit")
    parser.add_argument("--rd-rates", nargs="+", type=float, default=[2.0, 3.0, 4.0, 5.0, 6.0],
                        help="RDOQ rates allocated for the additivity check (the row's w_bits is added)")
    parser.add_argument("--seed", type=int, default=0, help="train split / init / training seed (val: seed + 1)")
    parser.add_argument("--work-root", type=Path, default=REPO / "work_dirs" / "bench_sparse")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results_sparse.json")
    parser.add_argument("--no-run", action="store_true", help="only collect the rows that already ran")
    parser.add_argument("--row", choices=list(METHODS), help=argparse.SUPPRESS)  # a child process: one row
    parser.add_argument("--row-bits", type=parse_bits, default=(32, 32), help=argparse.SUPPRESS)
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)  # a child process: training
    args = parser.parse_args()
    args.work_root = args.work_root.resolve()

    if args.train_only:
        train_fp(args)
        return

    if args.row is not None:
        w_bits, a_bits = args.row_bits
        result = run_row(args.row, w_bits, a_bits, args)
        path = args.work_root / f"{row_name(args.row, w_bits, a_bits)}.json"
        payload = {"settings": row_settings(args.row, w_bits, a_bits, args), "row": result}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(path)
        return

    start = time.perf_counter()
    args.work_root.mkdir(parents=True, exist_ok=True)
    if not args.no_run:  # training in a child process too, so no row's peak memory includes it
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--train-only", *settings_argv(args)],
                       cwd=REPO, check=True)
    rows: list[dict[str, Any]] = []
    if "fp" in args.methods:
        fp_row = cached_row("fp", 32, 32, args)
        if fp_row is not None:
            rows.append(fp_row)
    for w_bits, a_bits in args.bits:
        for method in args.methods:
            if method == "fp":
                continue
            r = cached_row(method, w_bits, a_bits, args)
            if r is not None:
                rows.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print_table(rows)
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
