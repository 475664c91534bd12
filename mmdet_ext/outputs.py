"""The outputs of a run: ``report.json``, the quantized checkpoint and the printed table."""
from __future__ import annotations

import json
from typing import Any

from torch import nn

from mmdet_ext.hooks import QuantContext
from mmdet_ext.pipeline import Prepared
from mmdet_ext.quant_section import hook_configs
from mmdet_ext.state import atomic_write_text, save_quantized
from rdoq_plugins.report import bit_stats, peak_rss_mb, size_bytes

METRICS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75")


def method_name(prep: Prepared) -> str:
    """``rdoq``, ``rdoq+qdrop``, ``qdrop`` or ``ptq`` (calibration only), from the hooks that run."""
    hooks = {h["type"] for h in hook_configs(prep.qcfg)}
    recon = "QDropReconHook" in hooks
    if "BitAllocHook" in hooks:
        return "rdoq+qdrop" if recon else "rdoq"
    return "qdrop" if recon else "ptq"


def finish_run(prep: Prepared, model: nn.Module, ctx: QuantContext | None, fp: dict[str, float],
               quant: dict[str, float], timings: dict[str, float], save_checkpoint: bool) -> dict[str, Any]:
    """Builds the report; rank 0 writes ``report.json`` and ``quantized.pth`` (atomically)."""
    report: dict[str, Any] = {
        "model": prep.cfg.filename,
        "checkpoint": str(prep.checkpoint),
        "method": method_name(prep),
        "fp": {k: fp[k] for k in METRICS if k in fp},
        "quant": {k: quant[k] for k in METRICS if k in quant},
        "bits": bit_stats(model),
        "size_bytes": size_bytes(model),
        "time_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "world_size": prep.world,
        "quant_config": prep.qcfg.to_dict(),
    }
    if ctx is not None:
        report["recon_units"] = ctx.recon_stats
        if ctx.recon_cost:
            report["recon_cache"] = ctx.recon_cost
        if "alloc" in ctx.rdoq:
            report["rdoq"] = ctx.rdoq["alloc"]
    if prep.rank == 0:
        if save_checkpoint:
            meta = {"CLASSES": list(prep.classes), "quant": {**prep.qcfg.to_dict(), "heads": prep.heads}}
            save_quantized(model, prep.work_dir / "quantized.pth", meta)
        atomic_write_text(json.dumps(report, indent=2) + "\n", prep.work_dir / "report.json")
    return report


def print_table(report: dict[str, Any]) -> None:
    """FP vs quantized box AP, with the bits."""
    bits = report["bits"]
    rows = [("FP32", "32/32", report["fp"]),
            (report["method"], f"{bits['weight_avg']:.2g}/{bits['act_avg']:.2g}", report["quant"])]
    print(f"\n{'model':<10}{'W/A':>10}{'bbox_mAP':>10}{'AP50':>8}{'AP75':>8}")
    for name, wa, m in rows:
        if m:
            print(f"{name:<10}{wa:>10}" + "".join(f"{m.get(k, float('nan')):>{w}.3f}" for k, w in zip(METRICS, (10, 8, 8))))
