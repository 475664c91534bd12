"""Flags of the OpenPCDet tools (``tools/pcdet/``): OpenPCDet's ``tools/test.py`` flags plus ours.

OpenPCDet's: ``--cfg_file``, ``--ckpt``, ``--batch_size`` (total over processes), ``--workers``,
``--extra_tag``, ``--launcher none|pytorch``, ``--tcp_port`` (accepted; torchrun sets the
address), ``--local_rank`` / ``--local-rank`` / ``LOCAL_RANK``, ``--save_to_file`` and ``--set KEY
VALUE ...`` (last on the line, as in OpenPCDet). Ours: ``--quant_cfg FILE`` (YAML in the core
schema or QDrop's layout, merged into the config's ``QUANT`` section), ``--work_dir`` (default:
OpenPCDet's ``output/<group>/<tag>/<extra_tag>/ckpt``), ``--trust_ckpt`` and ``--debug``. The RDOQ
tools add the RDOQ flags of :mod:`rdoq_plugins.cli_flags`, as on the mmdet side.

Nothing here imports OpenPCDet; :func:`tool_main` turns a missing OpenPCDet, and every input error
(config, checkpoint, work dir, disk), into one line and exit status 2, as on the mmdet side.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rdoq_plugins.cli_flags import add_debug_arg, add_rdoq_args, run_tool

__all__ = ["add_pcdet_args", "add_rdoq_args", "parse_pcdet_args", "tool_main", "tool_parser"]


def add_pcdet_args(parser: argparse.ArgumentParser, work_dir_required: bool = False) -> None:
    parser.add_argument("--cfg_file", type=str, required=True, help="OpenPCDet model config (YAML)")
    parser.add_argument("--ckpt", type=Path, required=True,
                        help="FP checkpoint (OpenPCDet's model_state), or a quantized.pth of ours")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="test batch size over all processes (default: OPTIMIZATION.BATCH_SIZE_PER_GPU each)")
    parser.add_argument("--workers", type=int, default=4, help="data loader workers")
    parser.add_argument("--extra_tag", type=str, default="default", help="extra tag of the default work dir")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--tcp_port", type=int, default=18888, help="accepted for compatibility; torchrun sets it")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None)
    parser.add_argument("--quant_cfg", "--quant-config", "--q_config", dest="quant_cfg", type=Path,
                        help="YAML quant config (core schema, or QDrop's layout) merged into the config's "
                             "QUANT section")
    parser.add_argument("--work_dir", "--work-dir", dest="work_dir", type=Path, required=work_dir_required,
                        help="report.json, quantized.pth, RD curves and allocations (default: OpenPCDet's "
                             "output/<group>/<tag>/<extra_tag>/ckpt)")
    parser.add_argument("--trust_ckpt", action="store_true",
                        help="unpickle the checkpoint fully (torch.load(weights_only=False)); trusted files only")
    parser.add_argument("--save_to_file", action="store_true", help="as OpenPCDet: write the predictions")
    add_debug_arg(parser)


def add_set_arg(parser: argparse.ArgumentParser) -> None:
    """``--set``: added last, it takes the rest of the command line (OpenPCDet's convention)."""
    parser.add_argument("--set", dest="set_cfgs", default=None, nargs=argparse.REMAINDER,
                        help="config keys and values, e.g. --set DATA_CONFIG.DATA_PATH ../data/nuscenes "
                             "QUANT.calibrate 64 (last on the line)")


def tool_parser(doc: str | None, work_dir_required: bool, rdoq: bool = False,
                extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """The parser of one tool: the shared flags, the tool's own (``extra``), RDOQ flags, ``--set``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pcdet_args(parser, work_dir_required)
    if extra is not None:
        extra(parser)
    if rdoq:
        add_rdoq_args(parser)
    add_set_arg(parser)
    return parser


def parse_pcdet_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses, taking the local rank from ``LOCAL_RANK`` (torchrun) when no flag gives it."""
    args = parser.parse_args(argv)
    if args.local_rank is None and "LOCAL_RANK" in os.environ:
        args.local_rank = int(os.environ["LOCAL_RANK"])
    if args.set_cfgs is not None and len(args.set_cfgs) % 2:
        parser.error(f"--set takes KEY VALUE pairs; got {len(args.set_cfgs)} words")
    return args


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to the current ``sys.stderr`` (which a test harness may swap)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def show_log(rank: int | None) -> None:
    """Prints the adapter's log records on stderr as OpenPCDet's logger does (INFO and up on rank
    0, e.g. the reconstruction's cost before the long work; WARNING and up elsewhere), unless
    the ``pcdet_ext`` logger has handlers already."""
    log = logging.getLogger("pcdet_ext")
    if log.handlers:
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(asctime)s  %(levelname)5s  %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if not rank else logging.WARNING)


def tool_main(body: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """Runs a tool's body with the adapter's log shown: a missing OpenPCDet (with the install
    instructions) or an input error prints ``error: <message>`` and exits with status 2, no
    traceback (``--debug``: raised)."""
    from pcdet_ext.openpcdet_import import PcdetMissing

    show_log(args.local_rank)
    return run_tool(body, args, (PcdetMissing,))
