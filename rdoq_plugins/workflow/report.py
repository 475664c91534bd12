"""``report.json`` and the printed FP-vs-quantized table, the same for every framework."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdoq_plugins.files import atomic_write_text
from rdoq_plugins.footprint import bit_stats, peak_rss_mb, size_bytes
from rdoq_plugins.workflow.session import Result, summed_timings

REPORT_FILE = "report.json"


def build_report(model: nn.Module, *, model_name: str, checkpoint: Path, method: str,
                 fp: Mapping[str, float], quant: Mapping[str, float], timings: Mapping[str, float],
                 world: int, quant_config: Mapping[str, Any], result: Result | None,
                 extra: Mapping[str, Any] | None = None, earlier_timings: Mapping[str, float] | None = None,
                 attempts: int | None = None) -> dict[str, Any]:
    """The report of one run: metrics, bits, size, time, memory, and the steps' results.

    ``timings`` are this attempt's; ``time_s`` adds ``earlier_timings`` (the attempts a resumed
    run's state counts) and ``attempts`` counts them all, both from ``result`` when not given."""
    if earlier_timings is None:
        earlier_timings = result.earlier_timings if result is not None else {}
    if attempts is None:
        attempts = result.attempts if result is not None else 1
    report: dict[str, Any] = {
        "model": model_name,
        "checkpoint": str(checkpoint),
        "method": method,
        "fp": dict(fp),
        "quant": dict(quant),
        "bits": bit_stats(model),
        "size_bytes": size_bytes(model),
        "time_s": {k: round(v, 2) for k, v in summed_timings(earlier_timings, timings).items()},
        "attempts": attempts,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "world_size": world,
        **dict(extra or {}),
        "quant_config": dict(quant_config),
    }
    if torch.cuda.is_available():
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if result is not None:
        report.update(result.to_dict())
    return report


def write_report(report: Mapping[str, Any], work_dir: Path) -> Path:
    """Writes ``work_dir/report.json`` atomically."""
    path = work_dir / REPORT_FILE
    atomic_write_text(json.dumps(report, indent=2, default=str) + "\n", path)
    return path


def format_table(report: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """FP and quantized ``metrics`` side by side, with the average weight / activation bits."""
    bits = report["bits"]
    rows = [("FP32", "32/32", report["fp"]),
            (report["method"], f"{bits['weight_avg']:.3g}/{bits['act_avg']:.3g}", report["quant"])]
    lines = [f"\n{'model':<12}{'W/A':>12}" + "".join(f"{m[-12:]:>14}" for m in metrics)]
    for name, wa, values in rows:
        if values:
            lines.append(f"{name:<12}{wa:>12}" + "".join(f"{values.get(m, float('nan')):>14.4f}" for m in metrics))
    return "\n".join(lines)
