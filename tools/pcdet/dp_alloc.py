"""Bit allocation from stored RD curves (RDOQ's second step) for several target rates.

    python $RDOQ_PLUGINS/tools/pcdet/dp_alloc.py --cfg_file CFG --ckpt CKPT --work_dir DIR [--quant_cfg FILE]
        --solver dp|lagrangian|greedy --target_rates 2 4 6 8 [--min_bits 1] [--no-measure]

Reads the curves ``tools/pcdet/gen_rd_curves.py`` wrote for the same config into ``DIR`` (its RDOQ
flags, recorded there, apply here too unless a flag says otherwise), allocates each target rate,
measures each allocation's distortion at the head outputs beside the predicted sum (the additivity
check), and writes ``DIR/rd_alloc/``: ``rate_<r>.json`` (per-group choices), ``summary.json``,
``rd_curves.png`` and ``bits_heatmap.png``; its allocation flags go to
``DIR/rd_alloc/settings.json`` for ``tools/pcdet/test.py``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

try:
    from pcdet_ext.cli import parse_pcdet_args, tool_main, tool_parser
except ImportError as err:  # spconv missing: pcdet_ext cannot load; its install text needs the stdlib only
    import runpy
    from pathlib import Path

    _install_text = Path(__file__).resolve().parents[2] / "pcdet_ext" / "openpcdet_import.py"
    sys.exit(runpy.run_path(str(_install_text))["missing_pcdet_message"](err))


def _own_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-measure", "--no_measure", dest="no_measure", action="store_true",
                        help="skip the measured distortion (no forward pass)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_pcdet_args(tool_parser(__doc__, work_dir_required=True, rdoq=True, extra=_own_flags), argv)


def print_summary(summary: dict[str, Any]) -> None:
    from rdoq_plugins.rd.rates import format_alloc_table

    print(format_alloc_table(summary))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from pcdet_ext.prepare import prepare
    from pcdet_ext.quantize import allocate
    from rdoq_plugins.cli_flags import rdoq_overrides
    from rdoq_plugins.workflow import barrier
    from rdoq_plugins.workflow.tool_settings import DP_ALLOC, record_alloc_flags
    from rdoq_plugins.workflow.work_dir import hold_work_dir

    prep = prepare(args, need_test=False, need_eval=False, need_calib=not args.no_measure, rdoq_tool=DP_ALLOC)
    summary = None
    with hold_work_dir(prep.work_dir):
        if prep.rank == 0:
            cfg = prep.qcfg.rdoq
            assert cfg is not None
            if args.no_measure:
                cfg = replace(cfg, additivity=False)
            summary = allocate(prep, cfg)
            record_alloc_flags(prep.work_dir, rdoq_overrides(args))  # for tools/pcdet/test.py
            print_summary(summary)
        barrier()
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
