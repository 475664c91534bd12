"""The outputs of an OpenPCDet run: ``report.json`` and the printed FP-vs-quantized table."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pcdet_ext.prepare import Prepared
from rdoq_plugins.workflow import build_report as core_report
from rdoq_plugins.workflow import default_steps, format_table, method_name
from rdoq_plugins.workflow import write_report as core_write

HEAD_METRICS = ("mAP", "NDS")  # printed first when present (nuScenes)
REPORT_PARTS = ("rdoq", "rd_curves", "recon_units", "recon_cache")  # the steps' parts of the report


def build_report(prep: Prepared, model: nn.Module, fp: Mapping[str, float], quant: Mapping[str, float],
                 run_report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The report of the run: metrics, bits, size, time (every attempt of a resumed run), memory and
    the steps' results."""
    extra: dict[str, Any] = {"calib": dict(prep.calib)}
    resumed: dict[str, Any] = {}
    if run_report is not None:
        extra.update(frames=run_report.get("frames"), quantized_layers=run_report.get("quantized_layers"))
        resumed = {"earlier_timings": run_report.get("earlier_timings"), "attempts": run_report.get("attempts")}
    report = core_report(model, model_name=str(prep.cfg_file), checkpoint=prep.checkpoint,
                         method=method_name(default_steps(prep.qcfg)), fp=fp, quant=quant, timings=prep.timings,
                         world=prep.world, quant_config=prep.qcfg.to_dict(), result=None, extra=extra, **resumed)
    if run_report is not None:
        report.update({k: run_report[k] for k in REPORT_PARTS if k in run_report})
    return report


def write_report(prep: Prepared, report: Mapping[str, Any]) -> None:
    if prep.rank == 0:
        core_write(report, prep.work_dir)


def print_table(report: Mapping[str, Any]) -> None:
    """FP vs quantized metrics (mAP and NDS first when present), with the bits."""
    keys = [k for k in HEAD_METRICS if k in report["fp"] or k in report["quant"]]
    if not keys:
        keys = sorted(set(report["fp"]) | set(report["quant"]))[:4]
    print(format_table(report, keys))
