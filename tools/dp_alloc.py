"""Bit allocation from stored RD curves (RDOQ's second step), for several target rates.

    python tools/dp_alloc.py CONFIG CHECKPOINT --work-dir DIR [--quant-config FILE]
        --solver dp|lagrangian|greedy --target_rates 2 4 6 8 [--min_bits 1] [--no-measure]
        [--target weight|act|joint|both] [--act_rate 4]

Reads the curves ``tools/gen_rd_curves.py`` wrote for the same config into ``DIR``, allocates each
target rate, measures each allocation's output distortion beside the predicted sum (the additivity
check), and writes ``DIR/rd_alloc/``: ``rate_<r>.json`` (per-group choices), ``summary.json``,
``rd_curves.png`` and ``bits_heatmap.png``. Same implementation as the ``BitAllocHook``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import add_run_args, parse_run_args
from mmdet_ext.dist import init_distributed
from mmdet_ext.pipeline import prepare, quantize
from mmdet_ext.rdoq_cli import add_rdoq_args, apply_rdoq_flags
from mmdet_ext.rdoq_hooks import ALLOC_DIR, run_allocation
from mmdet_ext.state import atomic_write_text
from rdoq_plugins.rd.run import format_alloc_table


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    parser.add_argument("--no-measure", action="store_true", help="skip the measured distortion (no forward pass)")
    add_rdoq_args(parser)
    args = parse_run_args(parser, argv)
    init_distributed(args.launcher, args.local_rank)
    prep = prepare(args.config, args.checkpoint, args.work_dir, args.quant_config, args.cfg_options)
    cfg = apply_rdoq_flags(prep, args)
    if args.no_measure:
        cfg = replace(cfg, additivity=False)
        prep.qcfg = replace(prep.qcfg, rdoq=cfg)
    ctx = quantize(prep, hooks=[])
    _, _, summary = run_allocation(ctx, cfg)
    if prep.rank == 0:
        atomic_write_text(json.dumps(summary, indent=2) + "\n", prep.work_dir / ALLOC_DIR / "summary.json")
        print(format_alloc_table(summary))
    return summary


if __name__ == "__main__":
    main()
