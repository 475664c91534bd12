"""Test (and quantize) an mmdet 2.28 detector: mmdet's test flow with rdoq-plugins' quant hooks.

    python tools/test.py CONFIG CHECKPOINT --eval bbox [--quant-config exp/config.yaml] [--work-dir DIR]
    tools/dist_test.sh CONFIG CHECKPOINT NPROC --eval bbox ...

The config's ``quant`` section (or ``--quant-config``) lists the hooks that run after the checkpoint
is loaded: calibration, QDrop reconstruction. The FP model is evaluated first (skip with
``--skip-fp``), then the quantized one. The work dir receives ``report.json`` and the quantized
checkpoint ``quantized.pth``, which this script evaluates again later without re-calibration.
A rerun with the same work dir resumes after the last finished reconstruction unit; two runs on
one work dir at a time are refused (``DIR/.lock``). With an ``rdoq`` section, the RDOQ flags that
``gen_rd_curves.py`` and ``dp_alloc.py`` were given in the same work dir apply here too, so their
curves are reused (this tool takes the same flags, which win). Bad input stops before any long
work with one line, ``error: <message>``, and exit status 2 (``--debug``: the traceback).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args, tool_main
from mmdet_ext.evaluate import evaluate
from mmdet_ext.outputs import finish_run, print_table
from mmdet_ext.prepare import Prepared, prepare
from mmdet_ext.quantize import plan_quantization, run_quantization
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags
from rdoq_plugins.workflow import Result, init_distributed
from rdoq_plugins.workflow.tool_settings import TEST
from rdoq_plugins.workflow.work_dir import hold_work_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser, work_dir_required=False)
    parser.add_argument("--eval", nargs="+", default=["bbox"], help="metrics, as in mmdet (default: bbox)")
    parser.add_argument("--skip-fp", action="store_true", help="do not evaluate the FP model")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="accepted for compatibility; BN is always folded")
    add_rdoq_args(parser)
    return parse_run_args(parser, argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    init_distributed(args.launcher, args.local_rank)
    start = time.time()
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    with hold_work_dir(prep.work_dir):
        return _run_held(prep, args, start)


def _run_held(prep: Prepared, args: argparse.Namespace, start: float) -> dict[str, Any]:
    """The run once the work dir is held: the quantization plan (its checks), FP evaluation,
    quantization, quantized evaluation, report. Every time goes into the session's result before
    the steps run, so the resumable state counts it and a resumed run's report sums every attempt."""
    if not prep.quantized_checkpoint:
        apply_rdoq_flags(prep, args, TEST)  # the rdoq section with what the RDOQ tools stored here
    planned = None if prep.quantized_checkpoint else plan_quantization(prep)  # checks before the FP evaluation
    result = planned.session.result if planned is not None else Result()
    result.add_time("prepare", time.time() - start)
    fp: dict[str, float] = {}
    if not args.skip_fp and not prep.quantized_checkpoint:
        fp, seconds = evaluate(prep, prep.model, "FP32 test", args.eval)
        result.add_time("eval_fp", seconds)
    model = prep.model if planned is None else run_quantization(planned).model
    quant, seconds = evaluate(prep, model, "quantized test", args.eval)
    result.add_time("eval_quant", seconds)
    report = finish_run(prep, model, planned, fp, quant, result.timings, save_checkpoint=planned is not None)
    if prep.rank == 0:
        print_table(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
