"""Test (and quantize) an mmdet 2.28 detector: mmdet's test flow with rdoq-plugins' quant hooks.

    python tools/test.py CONFIG CHECKPOINT --eval bbox [--quant-config exp/config.yaml] [--work-dir DIR]
    tools/dist_test.sh CONFIG CHECKPOINT NPROC --eval bbox ...

The config's ``quant`` section (or ``--quant-config``) lists the hooks that run after the checkpoint
is loaded: calibration, QDrop reconstruction. The FP model is evaluated first (skip with
``--skip-fp``), then the quantized one. The work dir receives ``report.json`` and the quantized
checkpoint ``quantized.pth``, which this script evaluates again later without re-calibration.
A rerun with the same work dir resumes after the last finished reconstruction unit.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from mmcv import DictAction

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.dist import init_distributed
from mmdet_ext.outputs import finish_run, print_table
from mmdet_ext.pipeline import evaluate, prepare, quantize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="mmdet config file")
    parser.add_argument("checkpoint", type=Path, help="FP checkpoint, or a quantized checkpoint of ours")
    parser.add_argument("--eval", nargs="+", default=["bbox"], help="metrics, as in mmdet (default: bbox)")
    parser.add_argument("--work-dir", type=Path, help="where report.json, quantized.pth and resume state go")
    parser.add_argument("--quant-config", "--q_config", dest="quant_config", type=Path,
                        help="YAML quant config (core schema) that supplies or overrides the quant section")
    parser.add_argument("--skip-fp", action="store_true", help="do not evaluate the FP model")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="accepted for compatibility; BN is always folded")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, as in mmdet")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None)
    args = parser.parse_args(argv)
    if args.local_rank is None and "LOCAL_RANK" in os.environ:
        args.local_rank = int(os.environ["LOCAL_RANK"])
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    init_distributed(args.launcher, args.local_rank)
    start = time.time()
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    timings: dict[str, float] = {"prepare": time.time() - start}
    fp: dict[str, float] = {}
    if not args.skip_fp and not prep.quantized_checkpoint:
        fp, timings["eval_fp"] = evaluate(prep, prep.model, "FP32 test", args.eval)
    if prep.quantized_checkpoint:
        model, ctx = prep.model, None
    else:
        ctx = quantize(prep)
        model = ctx.model
        timings.update(ctx.timings)
    quant, timings["eval_quant"] = evaluate(prep, model, "quantized test", args.eval)
    report = finish_run(prep, model, ctx, fp, quant, timings, save_checkpoint=ctx is not None)
    if prep.rank == 0:
        print_table(report)
    return report


if __name__ == "__main__":
    main()
