"""Calibration and QDrop block reconstruction alone; saves the quantized checkpoint.

    python tools/recon.py CONFIG CHECKPOINT --quant-config FILE --work-dir DIR

Runs the same hooks as ``tools/test.py`` (one implementation), writes ``DIR/quantized.pth`` and
``DIR/report.json`` (timings, bits, size), and resumes after the last finished unit when rerun.
Evaluate later with ``tools/test.py CONFIG DIR/quantized.pth --eval bbox``. Input errors: one line
and exit status 2, as ``tools/test.py``.
"""
from __future__ import annotations

import argparse

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args, tool_main
from mmdet_ext.outputs import finish_run
from mmdet_ext.prepare import prepare
from mmdet_ext.quantize import check_fp_checkpoint, quantize
from rdoq_plugins.workflow import init_distributed
from rdoq_plugins.workflow.work_dir import hold_work_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    return parse_run_args(parser, argv)


def run(args: argparse.Namespace) -> None:
    init_distributed(args.launcher, args.local_rank)
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    check_fp_checkpoint(prep)  # before the work dir is held: an error leaves it untouched
    with hold_work_dir(prep.work_dir):
        planned = quantize(prep)
        session = planned.session
        finish_run(prep, session.model, planned, {}, {}, session.result.timings, save_checkpoint=True)
    if prep.rank == 0:
        print(f"quantized checkpoint: {prep.work_dir / 'quantized.pth'}")


def main(argv: list[str] | None = None) -> None:
    tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
