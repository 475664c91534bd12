"""Calibration, RDOQ allocation (rdoq) and QDrop reconstruction (recon) of an OpenPCDet detector
alone; saves the quantized checkpoint.

    python $RDOQ_PLUGINS/tools/pcdet/recon.py --cfg_file CFG --ckpt CKPT --quant_cfg FILE --work_dir DIR

Same implementation as tools/pcdet/test.py; writes DIR/quantized.pth and DIR/report.json
(timings, bits, size, RD allocation, unit losses). Evaluate later with
``tools/pcdet/test.py --cfg_file CFG --ckpt DIR/quantized.pth``.
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_pcdet_args(tool_parser(__doc__, work_dir_required=True), argv)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from pcdet_ext.outputs import build_report, write_report
    from pcdet_ext.prepare import prepare
    from pcdet_ext.quantize import check_fp_checkpoint, quantize, save_checkpoint
    from rdoq_plugins.workflow import barrier
    from rdoq_plugins.workflow.work_dir import hold_work_dir

    prep = prepare(args, need_test=False, need_eval=False)
    check_fp_checkpoint(prep)  # before the work dir is held: an error leaves it untouched
    report = None
    with hold_work_dir(prep.work_dir):
        if prep.rank == 0:  # one process quantizes; the others have nothing to do
            model, run_report = quantize(prep)
            path = prep.work_dir / "quantized.pth"
            save_checkpoint(prep, model, path)
            report = build_report(prep, model, {}, {}, run_report)
            write_report(prep, report)
            print(f"quantized checkpoint: {path}")
        barrier()
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
