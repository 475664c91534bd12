"""Arguments every mmdet-side tool shares (config, checkpoint, work dir, quant config, launcher,
``--debug``), and :func:`tool_main`, which runs a tool's body with one-line input errors."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mmcv import DictAction

from rdoq_plugins.cli_flags import add_debug_arg, run_tool

T = TypeVar("T")


def add_run_args(parser: argparse.ArgumentParser, work_dir_required: bool = True) -> None:
    """``config checkpoint --work-dir --quant-config --cfg-options --launcher --local_rank --debug``."""
    parser.add_argument("config", type=Path, help="mmdet config file")
    parser.add_argument("checkpoint", type=Path, help="FP checkpoint, or a quantized checkpoint of ours")
    parser.add_argument("--work-dir", "--work_dir", dest="work_dir", type=Path, required=work_dir_required,
                        help="where report.json, quantized.pth, curves and resume state go")
    parser.add_argument("--quant-config", "--q_config", dest="quant_config", type=Path,
                        help="YAML quant config (core schema) that supplies or overrides the quant section")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, as in mmdet")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None)
    add_debug_arg(parser)


def parse_run_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parses, taking the local rank from ``LOCAL_RANK`` (torchrun) when no flag gives it."""
    args = parser.parse_args(argv)
    if args.local_rank is None and "LOCAL_RANK" in os.environ:
        args.local_rank = int(os.environ["LOCAL_RANK"])
    return args


def tool_main(body: Callable[[argparse.Namespace], T], args: argparse.Namespace) -> T:
    """Runs a tool's body: an input error (config, checkpoint, annotation file, work dir, disk)
    prints ``error: <message>`` and exits with status 2; ``--debug`` raises it instead."""
    return run_tool(body, args)
