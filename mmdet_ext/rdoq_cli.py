"""Command-line flags of the RDOQ tools, named as in RDOQ's scripts (``--nchannelbatch``,
``--testsize``, ``--maxrates``, ``--target_rates``), laid over the config's ``rdoq`` section."""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from mmdet_ext.pipeline import Prepared
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


def rdoq_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``rdoq`` keys the flags set."""
    out: dict[str, Any] = {}
    for key in ("estimator", "target", "solver", "target_rates", "min_bits"):
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


def apply_rdoq_flags(prep: Prepared, args: argparse.Namespace) -> RDOQConfig:
    """Validates the flags over the config's ``rdoq`` section (or the defaults) into ``prep``."""
    base = prep.qcfg.rdoq.to_dict() if prep.qcfg.rdoq is not None else {}
    try:
        cfg = RDOQConfig.from_dict({**base, **rdoq_overrides(args)})
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    prep.qcfg = replace(prep.qcfg, rdoq=cfg)
    return cfg
