"""The quantization of an mmdet run: the hooks of the quant section over one workflow session.

:func:`plan_quantization` quantizes a copy of the FP model, reads the calibration batches, resumes
the work dir's state and runs every hook's ``check``; nothing long runs there, so the tools call it
before the FP evaluation. :func:`run_quantization` then runs the hooks' ``before_test`` stages.
"""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from mmcv.runner import HOOKS, get_priority
from mmcv.utils import build_from_cfg

from mmdet_ext.act_placement import fuse_for_placement
from mmdet_ext.calib_data import calib_batches
from mmdet_ext.detector import DetectorAdapter, quantize_detector
from mmdet_ext.hooks import QuantHook
from mmdet_ext.prepare import Prepared
from mmdet_ext.quant_section import hook_configs
from mmdet_ext.rd_target import rd_scores
from rdoq_plugins.errors import InputError
from rdoq_plugins.memory import map_large_allocations
from rdoq_plugins.workflow import Session, Step, current, method_name, resume
from rdoq_plugins.workflow.steps import check_steps

logger = logging.getLogger("rdoq_plugins")


@dataclass
class Planned:
    """Quantization set up and checked, ready to run: the session and its hooks in run order."""

    session: Session
    hooks: list[QuantHook]

    @property
    def method(self) -> str:
        return method_name(self.steps)

    @property
    def steps(self) -> list[Step]:
        return [h.step for h in self.hooks if h.step is not None]


def images_needed(prep: Prepared, hooks: list[dict[str, Any]] | None) -> int | None:
    """How many calibration images a hook list reads: the RDOQ-only steps (curves, allocation)
    read ``rdoq.calib_images``; None means all of ``calibrate``."""
    qcfg = prep.qcfg
    if hooks is None or qcfg.rdoq is None or qcfg.rdoq.calib_images is None:
        return None
    if any(h["type"] not in ("RDCurvesHook", "BitAllocHook") for h in hooks):
        return None
    return min(qcfg.calibrate, qcfg.rdoq.calib_images)


def check_fp_checkpoint(prep: Prepared) -> None:
    """Raises an :class:`InputError` when the run's checkpoint is a quantized one of ours:
    quantizing starts from the FP checkpoint."""
    if prep.quantized_checkpoint:
        raise InputError(f"{prep.checkpoint} is a quantized checkpoint (a quantized.pth of ours); quantize the "
                         "FP checkpoint it was made from instead, or evaluate this one with "
                         f"tools/test.py CONFIG {prep.checkpoint}")


def plan_quantization(prep: Prepared, hooks: list[dict[str, Any]] | None = None) -> Planned:
    """The session and its hooks, checked: the config's hooks, resuming from the work dir's state,
    or ``hooks`` (the single-step RDOQ tools, which work on the FP model and never resume)."""
    check_fp_checkpoint(prep)
    fp_model = prep.model
    for p in fp_model.parameters():
        p.requires_grad_(False)
    fuse_for_placement(fp_model, prep.qcfg)  # the FP stem's output, a reconstruction target, after its ReLU
    model = copy.deepcopy(fp_model)
    quantize_detector(model, prep.qcfg, prep.heads)
    map_large_allocations()  # feature maps of tens of MB: their pages go back to the OS when freed
    random.seed(prep.calib["seed"])
    np.random.seed(prep.calib["seed"])
    batches = calib_batches(prep.calib_dataset, prep.qcfg.calibrate, prep.calib["samples_per_gpu"],
                            prep.calib["seed"], prep.rank, prep.world, images_needed(prep, hooks))
    adapter = DetectorAdapter(fp_model, prep.device, batches, rd_scores(prep.qcfg))
    session = Session(model=model, fp_model=fp_model, qcfg=prep.qcfg, adapter=adapter, batches=batches,
                      work_dir=prep.work_dir, device=prep.device, run_hash=prep.run_hash, data_hash=prep.data_hash,
                      dist=current(), logger=logger)
    if hooks is None:
        resume(session)
    built = [build_from_cfg(h, HOOKS) for h in (hooks if hooks is not None else hook_configs(prep.qcfg))]
    built.sort(key=lambda h: get_priority(h.priority))  # mmcv: lower value runs first
    planned = Planned(session, built)
    for hook in built:
        hook.check(session)
    check_steps(session, planned.steps)
    return planned


def run_quantization(planned: Planned) -> Session:
    """Runs the hooks' ``before_test`` stages in order (calibration, RD curves, bit allocation,
    reconstruction)."""
    for hook in planned.hooks:
        hook.before_test(planned.session)
    return planned.session


def quantize(prep: Prepared, hooks: list[dict[str, Any]] | None = None) -> Planned:
    """:func:`plan_quantization`, then :func:`run_quantization`."""
    planned = plan_quantization(prep, hooks)
    run_quantization(planned)
    return planned
