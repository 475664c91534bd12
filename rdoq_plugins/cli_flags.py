"""Command-line flags shared by the tools of both adapters (argparse only, no framework import).

The RDOQ flags are named as in RDOQ's scripts (``--nchannelbatch``, ``--testsize``,
``--maxrates``, ``--target_rates``) and laid over the quant config's ``rdoq`` section by
:func:`rdoq_from_flags`; the tools of every adapter use them.
"""
from __future__ import annotations

import argparse
from typing import Any

from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.config.rdoq import SOLVERS, Estimator, Target


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
    value exits with the config error's message."""
    data = base.to_dict() if base is not None else {}
    flags = rdoq_overrides(args)
    if flags.get("target", Target.BOTH.value) != Target.BOTH.value:
        data.pop("act_rate", None)  # the config's act_rate belongs to its target: both
    try:
        return RDOQConfig.from_dict({**data, **flags})
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
