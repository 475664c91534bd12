"""Command-line flags of the RDOQ tools, named as in RDOQ's scripts (``--nchannelbatch``,
``--testsize``, ``--maxrates``, ``--target_rates``), laid over the config's ``rdoq`` section and
the settings the earlier RDOQ tools stored in the work dir
(:mod:`rdoq_plugins.workflow.tool_settings`).

The flag definitions live in :mod:`rdoq_plugins.cli_flags` (shared with the OpenPCDet tools)."""
from __future__ import annotations

import argparse
from dataclasses import replace

from mmdet_ext.prepare import Prepared
from rdoq_plugins.cli_flags import add_rdoq_args, rdoq_overrides
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.hashing import run_hash
from rdoq_plugins.workflow.tool_settings import GEN_RD_CURVES, ToolRole, tool_rdoq

__all__ = ["add_rdoq_args", "apply_rdoq_flags", "rdoq_overrides"]


def apply_rdoq_flags(prep: Prepared, args: argparse.Namespace, role: ToolRole = GEN_RD_CURVES) -> RDOQConfig | None:
    """Validates the config's ``rdoq`` section (or the defaults), the flags ``role`` reads from the
    work dir and the tool's own flags into ``prep``; a changed section changes the run's hash (a
    saved run state of other settings does not resume)."""
    cfg = tool_rdoq(prep.qcfg.rdoq, rdoq_overrides(args), prep.work_dir, role)
    if cfg != prep.qcfg.rdoq:
        prep.qcfg = replace(prep.qcfg, rdoq=cfg)
        prep.run_hash = run_hash(prep.run_hash, cfg.to_dict() if cfg is not None else None)
    return cfg
