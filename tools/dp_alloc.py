"""Bit allocation from stored RD curves (RDOQ's second step), for several target rates.

    python tools/dp_alloc.py CONFIG CHECKPOINT --work-dir DIR [--quant-config FILE]
        --solver dp|lagrangian|greedy --target_rates 2 4 6 8 [--min_bits 1] [--no-measure]
        [--target weight|act|joint|both] [--act_rate 4]

Reads the curves ``tools/gen_rd_curves.py`` wrote for the same config into ``DIR`` (its RDOQ flags,
recorded there, apply here too unless a flag says otherwise), allocates each target rate, measures
each allocation's output distortion beside the predicted sum (the additivity check), and writes
``DIR/rd_alloc/``: ``rate_<r>.json`` (per-group choices), ``summary.json``, ``rd_curves.png`` and
``bits_heatmap.png``; its allocation flags are recorded in ``DIR/rd_alloc/settings.json`` for
``tools/test.py``. Same implementation as the ``BitAllocHook``. Input errors: one line and exit
status 2, as ``tools/test.py``.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args, tool_main
from mmdet_ext.prepare import prepare
from mmdet_ext.quantize import quantize
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags, rdoq_overrides
from rdoq_plugins.rd.rates import format_alloc_table
from rdoq_plugins.workflow import allocate_all, init_distributed
from rdoq_plugins.workflow.tool_settings import DP_ALLOC, record_alloc_flags
from rdoq_plugins.workflow.work_dir import hold_work_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    parser.add_argument("--no-measure", action="store_true", help="skip the measured distortion (no forward pass)")
    add_rdoq_args(parser)
    return parse_run_args(parser, argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    init_distributed(args.launcher, args.local_rank)
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    with hold_work_dir(prep.work_dir):
        cfg = apply_rdoq_flags(prep, args, DP_ALLOC)
        assert cfg is not None
        if args.no_measure:
            prep.qcfg = replace(prep.qcfg, rdoq=replace(cfg, additivity=False))
        _, _, summary = allocate_all(quantize(prep, hooks=[]).session)
        record_alloc_flags(prep.work_dir, rdoq_overrides(args), prep.rank)  # for test.py
    if prep.rank == 0:
        print(format_alloc_table(summary))
    return summary


def main(argv: list[str] | None = None) -> dict[str, object]:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
