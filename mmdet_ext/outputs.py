"""The outputs of an mmdet run: ``report.json``, the quantized checkpoint and the printed table."""
from __future__ import annotations

from typing import Any

from mmcv.runner import HOOKS
from torch import nn

from mmdet_ext.prepare import Prepared
from mmdet_ext.quant_section import hook_configs
from mmdet_ext.quantize import Planned
from rdoq_plugins.workflow import (
    FORMAT,
    build_report,
    format_table,
    method_name,
    save_quantized,
    write_report,
)

METRICS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75")


def configured_method(prep: Prepared) -> str:
    """The method the quant section's hooks make (that of a quantized checkpoint's stored config)."""
    steps = [HOOKS.get(h["type"]).step for h in hook_configs(prep.qcfg)]
    return method_name([s for s in steps if s is not None])


def finish_run(prep: Prepared, model: nn.Module, planned: Planned | None, fp: dict[str, float],
               quant: dict[str, float], timings: dict[str, float], save_checkpoint: bool) -> dict[str, Any]:
    """Builds the report; rank 0 writes ``report.json`` and ``quantized.pth`` (atomically)."""
    report = build_report(
        model, model_name=prep.cfg.filename, checkpoint=prep.checkpoint,
        method=planned.method if planned is not None else configured_method(prep),
        fp={k: fp[k] for k in METRICS if k in fp}, quant={k: quant[k] for k in METRICS if k in quant},
        timings=timings, world=prep.world, quant_config=prep.qcfg.to_dict(),
        result=planned.session.result if planned is not None else None)
    if prep.rank == 0:
        if save_checkpoint:
            quant_config = {**prep.qcfg.to_dict(), "heads": prep.heads}
            save_quantized(model, prep.work_dir / "quantized.pth", quant_config, {"CLASSES": list(prep.classes)},
                           FORMAT)
        write_report(report, prep.work_dir)
    return report


def print_table(report: dict[str, Any]) -> None:
    """FP vs quantized box AP, with the bits."""
    print(format_table(report, METRICS))
