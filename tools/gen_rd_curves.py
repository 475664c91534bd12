"""RD curves per channel group of every quantized layer of an mmdet detector (RDOQ's first step).

    python tools/gen_rd_curves.py CONFIG CHECKPOINT --work-dir DIR [--quant-config FILE]
        [--estimator second_order|measured] [--nchannelbatch 8] [--testsize 32] [--maxrates 11]

Curves go to ``DIR/rd_curves/<hash>/``, one file per layer; a rerun computes only the missing ones.
``tools/dp_alloc.py`` allocates bits from them, and ``tools/test.py`` with the same work dir reuses
them. Same implementation as the ``RDCurvesHook`` in the test loop. Input errors: one line and exit
status 2, as ``tools/test.py``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args, tool_main
from mmdet_ext.prepare import prepare
from mmdet_ext.quantize import quantize
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags
from rdoq_plugins.workflow import init_distributed
from rdoq_plugins.workflow.work_dir import hold_work_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    add_rdoq_args(parser)
    args = parse_run_args(parser, argv)
    return args


def run(args: argparse.Namespace) -> dict[str, object]:
    init_distributed(args.launcher, args.local_rank)
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    apply_rdoq_flags(prep, args)
    with hold_work_dir(prep.work_dir):
        result = quantize(prep, hooks=[{"type": "RDCurvesHook"}]).session.result
    assert result.curves is not None
    info = {**asdict(result.curves), "time_s": round(result.timings["curves"], 2)}
    if prep.rank == 0:
        print(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> dict[str, object]:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
