"""RD curves per channel group of every quantized layer of an mmdet detector (RDOQ's first step).

    python tools/gen_rd_curves.py CONFIG CHECKPOINT --work-dir DIR [--quant-config FILE]
        [--estimator second_order|measured] [--nchannelbatch 8] [--testsize 32] [--maxrates 11]

Curves go to ``DIR/rd_curves/<hash>/``, one file per layer; a rerun computes only the missing ones.
``tools/dp_alloc.py`` allocates bits from them, and ``tools/test.py`` with the same work dir reuses
them. Same implementation as the ``RDCurvesHook`` in the test loop.
"""
from __future__ import annotations

import argparse
import json

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args
from mmdet_ext.dist import init_distributed
from mmdet_ext.pipeline import prepare, quantize
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    add_rdoq_args(parser)
    args = parse_run_args(parser, argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    init_distributed(args.launcher, args.local_rank)
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    apply_rdoq_flags(prep, args)
    ctx = quantize(prep, hooks=[{"type": "RDCurvesHook"}])
    info = {**ctx.rdoq["curve_info"], "time_s": round(ctx.timings["curves"], 2)}
    if prep.rank == 0:
        print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
