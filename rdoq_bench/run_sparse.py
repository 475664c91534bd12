"""The sparse-detector benchmark: FP, min-max PTQ, QDrop, RDOQ and RDOQ+QDrop on a VoxelNeXt-shaped
toy detector, one table (issue "OpenPCDet plugin", item 7).

The model and the data come from :mod:`rdoq_bench.voxelnext_toy`: a spconv detector with VoxelNeXt's
module structure and names, synthetic ray-cast LiDAR scenes and a BEV detection metric
(center-distance AP at 0.5 / 1 / 2 m, mean over car / truck / pedestrian: ``bev_mAP``). No OpenPCDet
and no GPU needed. One row's work is in :mod:`rdoq_bench.sparse_rows`; this module drives the rows,
each in a child process, and caches them.

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

    OMP_NUM_THREADS=1 python -m rdoq_bench.run_sparse [--methods fp minmax qdrop rdoq rdoq+qdrop]
        [--bits W4A8 W3A8 W4A4] [--steps 300] [--iters 40] [--narrow] [--out bench/results_sparse.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rdoq_bench.sparse_rows import CALIB_BATCH, METHODS, parse_bits, row_name, row_settings, run_row, train_fp

REPO = Path(__file__).resolve().parents[1]
ROW_PROCESS = [sys.executable, "-m", "rdoq_bench.run_sparse"]  # a child process of this bench (cwd: REPO)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def settings_argv(args: argparse.Namespace) -> list[str]:
    """The command-line settings a row process needs (the same as this process's)."""
    argv = ["--steps", str(args.steps), "--lr", str(args.lr), "--train-scenes", str(args.train_scenes),
            "--train-batch", str(args.train_batch), "--val-scenes", str(args.val_scenes),
            "--calib-scenes", str(args.calib_scenes), "--iters", str(args.iters), "--seed", str(args.seed),
            "--blocks", str(args.blocks), "--eval-batch", str(args.eval_batch), "--work-root", str(args.work_root),
            "--rd-rates", *[str(r) for r in args.rd_rates], "--cache-dtype", args.cache_dtype]
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
    cmd = [*ROW_PROCESS, "--row", method, "--row-bits", f"W{w_bits}A{a_bits}", *settings_argv(args)]
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
    parser.add_argument("--cache-dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                        help="dtype of the reconstruction cache (float32: the tables before the shared workflow)")
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
        subprocess.run([*ROW_PROCESS, "--train-only", *settings_argv(args)], cwd=REPO, check=True)
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
