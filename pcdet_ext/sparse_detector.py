"""Post-training quantization of a sparse (spconv) detector through the core workflow.

The OpenPCDet flow (and the tests and the bench, on a VoxelNeXt-shaped toy) call
:func:`quantize_sparse_detector` with the model, its FP twin, calibration batches and two callables:

* ``run(model, batch)``: one forward pass (calibration and reconstruction capture with it);
* ``outputs(model, batch) -> list[Tensor]``: the RD distortion target; for VoxelNeXt every head
  branch's output features, so every quantized layer (backbone, ``conv_out``, ``shared_conv``,
  heads) is seen by it.

:class:`SparseDetectorAdapter` hands them to :mod:`rdoq_plugins.workflow`, which runs the steps the
quant config asks for: calibration, RD curves and allocation (``rdoq``), QDrop reconstruction
(``recon``) of every unit (:func:`pcdet_ext.units.sparse_units`) through
:class:`pcdet_ext.sparse_io.SparseUnitIO`. A reconstruction step reads one whole calibration batch
(its voxels belong together), so ``recon.batch_size`` does not apply here; the batch size of the
calibration batches does.

Quantized checkpoints (:func:`save_quantized` / :func:`load_quantized`) hold the state dict and the
validated quant config; loading rebuilds the quantized structure from a fresh FP model and loads
strictly: a missing, unexpected or renamed key is an error.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from pcdet_ext.sparse_io import SparseUnitIO
from pcdet_ext.units import sparse_units
from rdoq_plugins import ActPosition, QuantConfig, QuantLayer, quantize_model
from rdoq_plugins.config import ConfigError
from rdoq_plugins.footprint import bit_stats
from rdoq_plugins.hashing import run_hash
from rdoq_plugins.modules import set_quant_state
from rdoq_plugins.workflow import (
    SPARSE_FORMAT,
    CacheOptions,
    Session,
    Step,
    check_steps,
    default_steps,
    read_checkpoint,
    resume,
    run_step,
)
from rdoq_plugins.workflow.checkpoint import load_quantized as load_checkpoint
from rdoq_plugins.workflow.checkpoint import save_quantized as save_checkpoint

Run = Callable[[nn.Module, Any], Any]
Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]
FORMAT = SPARSE_FORMAT
logger = logging.getLogger("pcdet_ext")


@dataclass
class SparseDetectorAdapter:
    """The workflow's :class:`~rdoq_plugins.workflow.ModelAdapter` for a sparse detector, from
    its forward pass, its distortion target and its frame count."""

    forward: Run
    outputs: Outputs
    frames: Callable[[Any], int] = lambda b: 1
    unit_io: SparseUnitIO = field(default_factory=SparseUnitIO)
    target_tag: str = ""

    def run(self, model: nn.Module, batch: Any) -> Any:
        return self.forward(model, batch)

    def targets(self, model: nn.Module, batch: Any) -> Sequence[Tensor]:
        return self.outputs(model, batch)

    def images(self, batch: Any) -> int:
        return self.frames(batch)

    def units(self, model: nn.Module) -> list[str]:
        return list(sparse_units(model))


def quantize_sparse_model(model: nn.Module, qcfg: QuantConfig, check: bool = True) -> dict[str, QuantLayer]:
    """Wraps every registered layer of ``model`` (BN folded) in place, activation quantizers at the
    layer inputs; per-layer overrides of ``qcfg`` may leave layers FP. Deterministic given
    ``qcfg``, so :func:`load_quantized` rebuilds the same structure. ``check``: an override that
    names no layer of the model is an error (off for a stored config)."""
    if any(isinstance(m, QuantLayer) for m in model.modules()):
        raise ValueError("the model is quantized already")
    wrapped = quantize_model(model, qcfg, ActPosition.INPUT, check=check)
    if not wrapped:
        raise ConfigError("overrides", "no layer of the model is left to quantize", None)
    return wrapped


def quantize_sparse_detector(
    model: nn.Module,
    fp_model: nn.Module,
    batches: Sequence[Any],
    run: Run,
    outputs: Outputs,
    qcfg: QuantConfig,
    work_dir: Path | None = None,
    data_hash: str = "",
    images: Callable[[Any], int] = lambda b: 1,
    seed: int = 1005,
    cache: CacheOptions | None = None,
    progress: bool = False,
    timings: Mapping[str, float] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantizes ``model`` in place: wrap, then the workflow's steps (calibrate, RD curves and
    allocation with ``rdoq``, reconstruction with ``recon``), resuming the state a killed run with
    the same settings left in ``work_dir``.

    Args:
        model: the FP detector with BN folded (e.g. a deep copy of ``fp_model``); wrapped here.
        fp_model: the FP reference with BN folded the same way (left unchanged).
        batches: calibration batches (all are used for calibration and reconstruction).
        run: ``run(model, batch)``, one forward pass.
        outputs: ``outputs(model, batch)``, the RD distortion target's tensors.
        qcfg: the validated quant config (``rdoq`` and ``recon`` sections optional).
        work_dir: where RD curves, allocations, the resumable state and spilled reconstruction
            caches go; a temporary folder if None.
        data_hash: identifies model, checkpoint and data for reusing stored curves.
        images: frames in a batch (the RD report and ``rdoq.calib_images`` count them).
        seed: the reconstruction's random seed.
        cache: where each unit's reconstruction cache lives (4 GB of CPU memory, float16, then disk).
        progress: show progress bars.
        timings: the caller's seconds per step of this attempt so far (e.g. ``prepare``); saved
            with the resumable state, so a resumed run's report counts them.

    Returns:
        ``model`` and the report: frames, layers, bits, timings (this attempt's, ``timings``
        included), ``earlier_timings`` and ``attempts`` (from a resumed state), RD allocation, units.
    """
    with tempfile.TemporaryDirectory(prefix="rdoq-sparse-") as tmp:
        plan = plan_sparse_detector(model, fp_model, batches, run, outputs, qcfg,
                                    work_dir if work_dir is not None else Path(tmp), data_hash, images, seed, cache,
                                    progress, timings, resume_state=work_dir is not None)
        return run_plan(plan)


@dataclass
class SparsePlan:
    """A checked quantization: the session, the wrapped layers and the steps to run."""

    session: Session
    wrapped: dict[str, QuantLayer]
    steps: list[Step]


def plan_sparse_detector(
    model: nn.Module, fp_model: nn.Module, batches: Sequence[Any], run: Run, outputs: Outputs, qcfg: QuantConfig,
    work_dir: Path, data_hash: str = "", images: Callable[[Any], int] = lambda b: 1, seed: int = 1005,
    cache: CacheOptions | None = None, progress: bool = False, timings: Mapping[str, float] | None = None,
    resume_state: bool = True,
) -> SparsePlan:
    """:func:`quantize_sparse_detector` up to its long work: wraps ``model``, builds the session,
    resumes a saved state (``resume_state``) and runs the workflow's checks, which log the
    reconstruction's cost (units, capture passes, cache per tier) and refuse a spill the disk
    cannot hold."""
    if not batches:
        raise ValueError("no calibration batches")
    for p in fp_model.parameters():
        p.requires_grad_(False)
    wrapped = quantize_sparse_model(model, qcfg)
    adapter = SparseDetectorAdapter(run, outputs, images)
    device = next(model.parameters()).device
    session = Session(model=model, fp_model=fp_model, qcfg=qcfg, adapter=adapter, batches=list(batches),
                      work_dir=work_dir, device=device, run_hash=run_hash(qcfg.to_dict(), data_hash, seed),
                      data_hash=data_hash, seed=seed, cache=cache or CacheOptions(), logger=logger,
                      show_progress=progress)
    session.result.timings.update(timings or {})
    if resume_state:
        resume(session)
    steps = default_steps(qcfg)
    check_steps(session, steps)
    return SparsePlan(session, wrapped, steps)


def run_plan(plan: SparsePlan) -> tuple[nn.Module, dict[str, Any]]:
    """Runs a plan's steps; returns the quantized model and the report of
    :func:`quantize_sparse_detector`."""
    session, model = plan.session, plan.session.model
    for step in plan.steps:
        run_step(session, step)
    set_quant_state(model, weight=True, act=True)
    model.eval()
    kinds = sparse_units(model)
    batches, images = session.batches, session.adapter.images
    report: dict[str, Any] = {"frames": sum(images(b) for b in batches), "batches": len(batches),
                              "quantized_layers": len(plan.wrapped), "bits": bit_stats(model),
                              "timings": dict(session.result.timings),
                              "earlier_timings": dict(session.result.earlier_timings),
                              "attempts": session.result.attempts, **session.result.to_dict()}
    for name, unit in report.get("recon_units", {}).items():
        unit["kind"] = kinds[name].value
    return model, report


def save_quantized(model: nn.Module, qcfg: QuantConfig, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Writes the quantized checkpoint (``torch.load(weights_only=True)`` reads it), atomically."""
    save_checkpoint(model, path, qcfg.to_dict(), meta or {}, FORMAT)


def load_quantized(model: nn.Module, path: Path, extra_keys: Sequence[str] = ()) -> tuple[nn.Module, QuantConfig]:
    """Loads a quantized checkpoint into ``model``, a freshly built FP structure with BN folded
    (no weights needed): wraps it with the stored quant config, then loads strictly. No calibration
    runs; the result evaluates as the saved model did."""
    ckpt = read_checkpoint(path)
    device = next(model.parameters()).device

    def build(quant: Any) -> nn.Module:
        quantize_sparse_model(model, QuantConfig.from_dict(quant, extra_keys=extra_keys), check=False)
        return model

    load_checkpoint(ckpt, path, build, FORMAT)
    return model.to(device).eval(), QuantConfig.from_dict(ckpt["meta"]["quant"], extra_keys=extra_keys)


__all__ = ["FORMAT", "SparseDetectorAdapter", "SparsePlan", "load_quantized", "plan_sparse_detector",
           "quantize_sparse_detector", "quantize_sparse_model", "run_plan", "save_quantized"]
