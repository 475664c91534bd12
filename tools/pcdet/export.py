"""Export a quantized OpenPCDet detector (VoxelNeXt) for an integer sparse-convolution engine.

    python $RDOQ_PLUGINS/tools/pcdet/export.py --cfg_file CFG --ckpt DIR/quantized.pth --out OUT [--check]

--ckpt is the quantized.pth that tools/pcdet/test.py or recon.py wrote. OUT receives
weights.packed (every quantized weight bit-packed at its groups' bits, the steps, zero points,
activation steps and FP tensors) and manifest.json (per quantized layer: kind, kernel, stride,
padding, dilation, indice_key, bits per group, steps and zero points of weight and activations;
see pcdet_ext/export.py and docs/export.md). --check rebuilds the model from OUT alone (a fresh
build_network, BN folded, pcdet_ext.export.load_exported) and compares its state bit for bit and
its head outputs on --batches test batches with the quantized checkpoint's model.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from pcdet_ext.cli import parse_pcdet_args, tool_main, tool_parser
except ImportError as err:  # spconv missing: pcdet_ext cannot load; its install text needs the stdlib only
    import runpy

    _install_text = Path(__file__).resolve().parents[2] / "pcdet_ext" / "openpcdet_import.py"
    sys.exit(runpy.run_path(str(_install_text))["missing_pcdet_message"](err))


def _own_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--check", action="store_true",
                        help="rebuild the model from OUT and compare state and head outputs")
    parser.add_argument("--batches", type=int, default=2, help="test batches of --check (default 2)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = parse_pcdet_args(tool_parser(__doc__, work_dir_required=False, extra=_own_flags), argv)
    if args.work_dir is None:
        args.work_dir = args.out
    return args


def check(prep: Any, out: Path, batches: int) -> dict[str, Any]:
    """The model rebuilt from ``out`` against the loaded checkpoint's: differing state keys, and
    whether every head output on ``batches`` test batches is identical."""
    import torch

    from pcdet_ext.config import EXTRA_KEYS
    from pcdet_ext.detector import batch_on, head_outputs
    from pcdet_ext.export import load_exported, same_state
    from rdoq_plugins import fuse_conv_bn

    fresh = prep.pcdet.build_network(model_cfg=prep.cfg.MODEL, num_class=len(prep.cfg.CLASS_NAMES),
                                     dataset=prep.test_set)
    fresh, _ = load_exported(fuse_conv_bn(fresh), out, EXTRA_KEYS)
    fresh = fresh.to(prep.device).eval()
    differing = same_state(prep.model, fresh)
    compared, identical = 0, True
    with torch.no_grad():
        for i, batch in enumerate(prep.test_loader):
            if i >= batches:
                break
            a = head_outputs(prep.model, batch_on(batch, prep.device))
            b = head_outputs(fresh, batch_on(batch, prep.device))
            identical &= len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
            compared += 1
    return {"state_keys_differing": differing, "batches": compared, "outputs_identical": bool(identical)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pcdet_ext.export import export_sparse
    from pcdet_ext.prepare import prepare
    from rdoq_plugins.errors import InputError

    prep = prepare(args, need_calib=False, need_eval=False)
    if not prep.quantized_checkpoint:
        raise InputError(f"{args.ckpt} is not a quantized checkpoint: quantize first (tools/pcdet/test.py "
                         "or tools/pcdet/recon.py write DIR/quantized.pth)")
    meta = {"cfg_file": str(args.cfg_file), "checkpoint": str(args.ckpt)}
    report: dict[str, Any] = {"out": str(args.out), **export_sparse(prep.model, prep.qcfg, args.out, meta)}
    if args.check:
        report["check"] = check(prep, args.out, args.batches)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    report = tool_main(run, parse_args(argv))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
