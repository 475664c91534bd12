"""One row of the sparse-detector benchmark (:mod:`rdoq_bench.run_sparse`), in this process: the
settings a row depends on, training the FP toy (:func:`train_fp`) and quantizing and evaluating it
(:func:`run_row`). The toy comes from :mod:`rdoq_bench.voxelnext_toy`; torch, spconv and
``pcdet_ext`` are imported on first use, not at module import.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import re
import time
from typing import Any

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
# Settings
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
        if args.cache_dtype != "float16":
            out["cache_dtype"] = args.cache_dtype
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
    from rdoq_bench import voxelnext_toy as toy

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

    from pcdet_ext.sparse_detector import quantize_sparse_detector
    from rdoq_plugins import fuse_conv_bn, load_quant_config
    from rdoq_plugins.footprint import peak_rss_mb
    from rdoq_plugins.workflow import CacheOptions

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
        data_hash = digest({"fp": fp_settings(args), "calib_scenes": args.calib_scenes})
        start = time.perf_counter()
        model, report = quantize_sparse_detector(
            copy.deepcopy(fp), fp, calib, toy.run_model, toy.head_outputs, qcfg,
            work_dir=args.work_root / "shared", data_hash=data_hash, images=lambda b: b["batch_size"], seed=args.seed,
            cache=CacheOptions(cache_dtype=args.cache_dtype))
        out["time_s"] = round(time.perf_counter() - start, 1)
        out["timings"] = {k: round(v, 2) for k, v in report["timings"].items()}
        out["w_avg_all"] = round(report["bits"]["weight_avg"], 3)
        if "recon_units" in report:
            out["recon_units"] = len(report["recon_units"])
        if "rdoq" in report:
            rd = report["rdoq"]
            chosen = next(r for r in rd["rates"] if r["target_rate"] == rd["apply_rate"])
            add = rd["additivity"]
            out.update(curve_time_s=round(report["timings"]["curves"], 2),
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
