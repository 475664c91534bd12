"""Test (and quantize) an OpenPCDet detector (VoxelNeXt): OpenPCDet's test flow with rdoq-plugins' PTQ.

Run from OpenPCDet's tools/ folder (its configs name paths relative to it):

    python $RDOQ_PLUGINS/tools/pcdet/test.py --cfg_file cfgs/nuscenes_models/cbgs_voxel0075_voxelnext.yaml \\
        --ckpt CKPT --quant_cfg $RDOQ_PLUGINS/configs/pcdet/voxelnext_nuscenes_qdrop_w4a8.yaml --work_dir DIR
    $RDOQ_PLUGINS/tools/pcdet/dist_test.sh NGPUS --cfg_file ... --ckpt CKPT --quant_cfg ... --work_dir DIR
    python $RDOQ_PLUGINS/tools/pcdet/test.py --cfg_file ... --ckpt DIR/quantized.pth   # no re-calibration

The quant section is the config's top-level QUANT key, with --quant_cfg's keys laid over it. The
calibration frames are read and the quantization checked first (the reconstruction's cost is
logged), then the FP model is evaluated (skip with --skip_fp), then calibrated, allocated (rdoq) and reconstructed
(recon), then evaluated again with OpenPCDet's eval_utils.eval_one_epoch. The work dir receives
quantized.pth, report.json and the evaluation results (eval/fp, eval/quant). With an rdoq section,
the RDOQ flags gen_rd_curves.py and dp_alloc.py were given in the same work dir apply here too, so
their curves are reused; this tool takes the same flags, which win.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

try:
    from pcdet_ext.cli import parse_pcdet_args, tool_main, tool_parser
except ImportError as err:  # spconv missing: pcdet_ext cannot load; its install text needs the stdlib only
    import runpy
    from pathlib import Path

    _install_text = Path(__file__).resolve().parents[2] / "pcdet_ext" / "openpcdet_import.py"
    sys.exit(runpy.run_path(str(_install_text))["missing_pcdet_message"](err))


def _own_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip_fp", "--skip-fp", dest="skip_fp", action="store_true",
                        help="do not evaluate the FP model")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_pcdet_args(tool_parser(__doc__, work_dir_required=False, rdoq=True, extra=_own_flags), argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pcdet_ext.evaluate import evaluate
    from pcdet_ext.outputs import build_report, print_table, write_report
    from pcdet_ext.prepare import prepare
    from pcdet_ext.quantize import plan_quantization, quantize_on_rank0
    from rdoq_plugins.workflow.tool_settings import TEST
    from rdoq_plugins.workflow.work_dir import hold_work_dir

    prep = prepare(args, rdoq_tool=TEST)
    with hold_work_dir(prep.work_dir):  # the work dir is this run's from here on
        # Calibration frames and the checks (the reconstruction's cost logged) before the FP evaluation.
        plan = plan_quantization(prep) if prep.rank == 0 and not prep.quantized_checkpoint else None
        fp: dict[str, float] = {}
        if not args.skip_fp and not prep.quantized_checkpoint:
            fp = evaluate(prep, prep.model, "fp")
        run_report = None
        if prep.quantized_checkpoint:
            model = prep.model
        else:
            model, run_report = quantize_on_rank0(prep, plan)
        quant = evaluate(prep, model, "quant")
        report = build_report(prep, model, fp, quant, run_report)
        write_report(prep, report)
    if prep.rank == 0:
        print_table(report)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
