"""The quantization of an OpenPCDet run through the core workflow.

:func:`plan_quantization`: ``N`` calibration frames (``quant.calibrate``) from the train or test
split, the quantized copy and its checks, which log the reconstruction's cost before any long
work (:func:`pcdet_ext.sparse_detector.plan_sparse_detector`); :func:`quantize` then runs the
steps (calibrate, RD curves and allocation, reconstruction; resumable). Its ``run(model,
batch)`` is the forward pass of the VFE, the backbones and every head branch *without*
post-processing, on a shallow copy of the batch dict; its distortion target is all head
branches' features (:mod:`pcdet_ext.detector`).

The RDOQ steps alone: :func:`generate_curves` (RD curves into ``work_dir/rd_curves/``) and
:func:`allocate` (allocations into ``work_dir/rd_alloc/``).

Distributed runs (``--launcher pytorch``): rank 0 alone calibrates and reconstructs and writes
``quantized.pth``; the other ranks load it (the work dir must be shared between nodes).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcdet_ext.calib_data import calib_batches
from pcdet_ext.config import EXTRA_KEYS
from pcdet_ext.detector import copy_detector, frames, make_run
from pcdet_ext.prepare import Prepared
from pcdet_ext.sparse_detector import (
    SparseDetectorAdapter,
    SparsePlan,
    load_quantized,
    logger,
    plan_sparse_detector,
    quantize_sparse_model,
    run_plan,
    save_quantized,
)
from rdoq_plugins import fuse_conv_bn
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.errors import InputError
from rdoq_plugins.workflow import Session, Step, allocate_all, barrier, check_steps, run_step
from rdoq_plugins.workflow.tool_settings import record_curve_flags


def calibration_data(prep: Prepared) -> list[dict[str, Any]]:
    if prep.calib_set is None:
        raise ValueError("no calibration split was prepared")
    start = time.time()
    batches = calib_batches(prep.calib_set, prep.qcfg.calibrate, prep.calib["batch_size"], prep.calib["seed"],
                            prep.workers)
    prep.timings["calib_data"] = time.time() - start
    return batches


def check_fp_checkpoint(prep: Prepared) -> None:
    """Raises an :class:`InputError` when the run's checkpoint is a quantized one of ours:
    quantization, RD curves and allocations start from the FP checkpoint."""
    if prep.quantized_checkpoint:
        raise InputError(f"{prep.checkpoint} is a quantized checkpoint (a quantized.pth of ours); pass the FP "
                         "checkpoint it was made from instead, or evaluate this one with "
                         f"tools/pcdet/test.py --ckpt {prep.checkpoint}")


def plan_quantization(prep: Prepared) -> SparsePlan:
    """The calibration frames, a quantized copy of the FP model and its session, checked."""
    check_fp_checkpoint(prep)
    batches = calibration_data(prep)
    run, outputs = make_run(prep.device)
    return plan_sparse_detector(
        copy_detector(prep.model), prep.model, batches, run, outputs, prep.qcfg, work_dir=prep.work_dir,
        data_hash=prep.data_hash, images=frames, seed=prep.calib["seed"], progress=prep.rank == 0,
        timings=prep.timings)


def quantize(prep: Prepared, plan: SparsePlan | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A quantized copy of the FP model and the steps' report (``plan``: made earlier by
    :func:`plan_quantization`, e.g. before the FP evaluation)."""
    model, report = run_plan(plan if plan is not None else plan_quantization(prep))
    prep.timings.update(report["timings"])
    return model, report


def quantize_on_rank0(prep: Prepared, plan: SparsePlan | None = None) -> tuple[nn.Module, dict[str, Any] | None]:
    """:func:`quantize` on rank 0, which writes ``quantized.pth``; the other ranks wait, then load it."""
    path = prep.work_dir / "quantized.pth"
    report = None
    if prep.rank == 0:
        model, report = quantize(prep, plan)
        save_checkpoint(prep, model, path)
    barrier()
    if prep.rank != 0:
        structure = prep.pcdet.build_network(model_cfg=prep.cfg.MODEL, num_class=len(prep.cfg.CLASS_NAMES),
                                             dataset=prep.test_set)
        model, _ = load_quantized(fuse_conv_bn(structure), path, extra_keys=EXTRA_KEYS)
        model = model.to(prep.device).eval()
    return model, report


def save_checkpoint(prep: Prepared, model: nn.Module, path: Path) -> None:
    meta = {"cfg_file": str(prep.cfg_file), "fp_checkpoint": str(prep.checkpoint),
            "CLASS_NAMES": list(prep.cfg.CLASS_NAMES)}
    save_quantized(model, prep.qcfg, path, meta)


def rd_session(prep: Prepared, cfg: RDOQConfig, batches: list[Any]) -> Session:
    """A session on a quantized copy of the FP model (not calibrated: curves and allocations set
    their own grids) with ``cfg`` as the ``rdoq`` section."""
    check_fp_checkpoint(prep)
    qcfg = replace(prep.qcfg, rdoq=cfg)
    model = copy_detector(prep.model)
    quantize_sparse_model(model, qcfg)
    run, outputs = make_run(prep.device)
    return Session(model=model, fp_model=prep.model, qcfg=qcfg, adapter=SparseDetectorAdapter(run, outputs, frames),
                   batches=batches, work_dir=prep.work_dir, device=prep.device, data_hash=prep.data_hash,
                   logger=logger, show_progress=prep.rank == 0)


def generate_curves(prep: Prepared, cfg: RDOQConfig, flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """RD curves of every allocated layer into ``work_dir/rd_curves/<hash>/`` (the missing ones
    only); after the checks, the RDOQ ``flags`` that set ``cfg`` are recorded for the later tools."""
    session = rd_session(prep, cfg, calibration_data(prep))
    check_steps(session, [Step.CURVES])
    record_curve_flags(session, flags or {})
    run_step(session, Step.CURVES)
    assert session.result.curves is not None
    return {**asdict(session.result.curves), "time_s": round(session.result.timings["curves"], 2)}


def allocate(prep: Prepared, cfg: RDOQConfig) -> dict[str, Any]:
    """Allocations for every target rate from the stored curves, the additivity check
    (``cfg.additivity``), and ``work_dir/rd_alloc/``: ``rate_<r>.json`` (per-group choices),
    ``summary.json``, ``rd_curves.png`` and ``bits_heatmap.png``."""
    batches = calibration_data(prep) if cfg.additivity else []
    with torch.enable_grad():
        _, _, summary = allocate_all(rd_session(prep, cfg, batches))
    return summary
