"""Command-line flags shared by the tools of both adapters (argparse only, no framework import),
and :func:`run_tool`, which turns an input error into one line and exit status 2.

The RDOQ flags are named as in RDOQ's scripts (``--nchannelbatch``, ``--testsize``,
``--maxrates``, ``--target_rates``) and laid over the quant config's ``rdoq`` section by
:func:`rdoq_from_flags`; the tools of every adapter use them.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.config.rdoq import SOLVERS, Estimator, Target
from rdoq_plugins.errors import InputError
from rdoq_plugins.files import StateDictMismatch
from rdoq_plugins.recon.cost import DiskSpaceError

T = TypeVar("T")
# Errors in what the user gave (config, checkpoint, data, work dir, disk): one line, exit 2.
# CheckpointError and WorkDirError are InputErrors; any other exception is a bug: traceback.
INPUT_ERRORS: tuple[type[BaseException], ...] = (InputError, ConfigError, FileNotFoundError, StateDictMismatch,
                                                 DiskSpaceError)
INPUT_ERROR_STATUS = 2


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an input error instead of its one-line message")


def error_message(err: BaseException) -> str:
    """The message of ``err`` (a KeyError's without the quotes ``str`` adds); ours are one line,
    install instructions may add more."""
    text = str(err.args[0]) if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    return text.strip() or type(err).__name__


def run_tool(body: Callable[[argparse.Namespace], T], args: argparse.Namespace,
             input_errors: tuple[type[BaseException], ...] = ()) -> T:
    """Runs a tool's ``body``: an input error (:data:`INPUT_ERRORS` and ``input_errors``) prints
    ``error: <message>`` on stderr and exits with status 2, unless ``args.debug`` (then it is
    raised, traceback and all); any other exception keeps its traceback."""
    try:
        return body(args)
    except INPUT_ERRORS + input_errors as err:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error_message(err)}", file=sys.stderr, flush=True)
        raise SystemExit(INPUT_ERROR_STATUS) from None


def add_rdoq_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("RDOQ (override the quant config's rdoq section)")
    g.add_argument("--estimator", choices=[e.value for e in Estimator])
    g.add_argument("--target", choices=[t.value for t in Target], help="allocate weights, activations or both")
    g.add_argument("--nchannelbatch", type=int, help="channels per weight and activation group")
    g.add_argument("--testsize", type=int, help="calibration images used for the curves")
    g.add_argument("--maxrates", type=int, help="candidate bit-widths 0 .. maxrates-1 (RDOQ: 11)")
    g.add_argument("--solver", choices=SOLVERS)
    g.add_argument("--target_rates", "--target-rates", dest="target_rates", nargs="+", type=float)
    g.add_argument("--min_bits", "--min-bits", dest="min_bits", type=int)
    g.add_argument("--act_rate", "--act-rate", dest="act_rate", type=float,
                   help="with --target both: the activations' average bits (the weights take --target_rates)")


def rdoq_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``rdoq`` keys the flags set."""
    out: dict[str, Any] = {}
    for key in ("estimator", "target", "solver", "target_rates", "min_bits", "act_rate"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    if args.nchannelbatch is not None:
        out["weight_group"] = out["act_group"] = args.nchannelbatch
    if args.testsize is not None:
        out["calib_images"] = args.testsize
    if args.maxrates is not None:
        out["weight_bits"] = out["act_bits"] = list(range(args.maxrates))
    if "target_rates" in out:
        out["apply_rate"] = out["target_rates"][0]
    return out


def rdoq_from_flags(base: RDOQConfig | None, args: argparse.Namespace) -> RDOQConfig:
    """The flags validated over ``base`` (the config's ``rdoq`` section, or the defaults); a bad
    value is a :class:`ConfigError` (:func:`run_tool` prints it)."""
    data = base.to_dict() if base is not None else {}
    flags = rdoq_overrides(args)
    if flags.get("target", Target.BOTH.value) != Target.BOTH.value:
        data.pop("act_rate", None)  # the config's act_rate belongs to its target: both
    return RDOQConfig.from_dict({**data, **flags})
