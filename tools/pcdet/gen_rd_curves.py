"""RD curves per channel group of every quantized layer of an OpenPCDet detector (RDOQ's first step).

    python $RDOQ_PLUGINS/tools/pcdet/gen_rd_curves.py --cfg_file CFG --ckpt CKPT --work_dir DIR [--quant_cfg FILE]
        [--estimator second_order|measured] [--nchannelbatch 8] [--testsize 32] [--maxrates 11]

The distortion is measured at the outputs of every head branch. Curves go to
``DIR/rd_curves/<hash>/``, one file per layer, stored as they are done: a rerun (also after a kill)
computes only the missing ones. The RDOQ flags given here are recorded in
``DIR/rd_curves/settings.json``: ``tools/pcdet/dp_alloc.py`` and ``tools/pcdet/test.py`` with the
same work dir take them over and reuse the curves.
"""
from __future__ import annotations

import argparse
import json
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
    return parse_pcdet_args(tool_parser(__doc__, work_dir_required=True, rdoq=True), argv)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from pcdet_ext.prepare import prepare
    from pcdet_ext.quantize import generate_curves
    from rdoq_plugins.cli_flags import rdoq_overrides
    from rdoq_plugins.workflow import barrier
    from rdoq_plugins.workflow.tool_settings import GEN_RD_CURVES
    from rdoq_plugins.workflow.work_dir import hold_work_dir

    prep = prepare(args, need_test=False, need_eval=False, rdoq_tool=GEN_RD_CURVES)
    info = None
    with hold_work_dir(prep.work_dir):
        if prep.rank == 0:
            assert prep.qcfg.rdoq is not None
            info = generate_curves(prep, prep.qcfg.rdoq, rdoq_overrides(args))
            print(json.dumps(info, indent=2))
        barrier()
    return info


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return tool_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
