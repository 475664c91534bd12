"""RD curves per channel group of every quantized layer of an mmdet detector (RDOQ's first step).

    python tools/gen_rd_curves.py CONFIG CHECKPOINT --work-dir DIR [--quant-config FILE]
        [--estimator second_order|measured] [--nchannelbatch 8] [--testsize 32] [--maxrates 11]

Curves go to ``DIR/rd_curves/<hash>/``, one file per layer, stored as they are done: a rerun (also
after a kill) computes only the missing ones. The RDOQ flags given here are recorded in
``DIR/rd_curves/settings.json``: ``tools/dp_alloc.py`` and ``tools/test.py`` with the same work dir
take them over and reuse the curves. Same implementation as the ``RDCurvesHook`` in the test
loop. Input errors: one line and exit status 2, as ``tools/test.py``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args, tool_main
from mmdet_ext.prepare import prepare
from mmdet_ext.quantize import plan_quantization, run_quantization
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags, rdoq_overrides
from rdoq_plugins.workflow import init_distributed
from rdoq_plugins.workflow.tool_settings import GEN_RD_CURVES, record_curve_flags
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
    apply_rdoq_flags(prep, args, GEN_RD_CURVES)
    with hold_work_dir(prep.work_dir):
        planned = plan_quantization(prep, hooks=[{"type": "RDCurvesHook"}])
        record_curve_flags(planned.session, rdoq_overrides(args))  # for dp_alloc.py and test.py
        result = run_quantization(planned).result
    assert result.curves is not None
    info = {**asdict(result.curves), "time_s": round(result.timings["curves"], 2)}
    if prep.rank == 0:
        print(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> dict[str, object]:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
