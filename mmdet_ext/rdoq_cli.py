"""Command-line flags of the RDOQ tools, named as in RDOQ's scripts (``--nchannelbatch``,
``--testsize``, ``--maxrates``, ``--target_rates``), laid over the config's ``rdoq`` section.

The flag definitions live in :mod:`rdoq_plugins.cli_flags` (shared with the OpenPCDet tools)."""
from __future__ import annotations

import argparse
from dataclasses import replace

from mmdet_ext.prepare import Prepared
from rdoq_plugins.cli_flags import add_rdoq_args, rdoq_from_flags, rdoq_overrides
from rdoq_plugins.config import RDOQConfig

__all__ = ["add_rdoq_args", "apply_rdoq_flags", "rdoq_overrides"]


def apply_rdoq_flags(prep: Prepared, args: argparse.Namespace) -> RDOQConfig:
    """Validates the flags over the config's ``rdoq`` section (or the defaults) into ``prep``."""
    cfg = rdoq_from_flags(prep.qcfg.rdoq, args)
    prep.qcfg = replace(prep.qcfg, rdoq=cfg)
    return cfg
