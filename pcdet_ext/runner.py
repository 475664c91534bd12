"""Post-training quantization of a sparse (spconv) detector, framework-independent.

The OpenPCDet adapter (and the tests, on a VoxelNeXt-shaped toy) call :func:`quantize_sparse_detector`
with the model, its FP twin, calibration batches and two callables:

* ``run(model, batch)``: one forward pass (calibration and reconstruction capture with it);
* ``outputs(model, batch) -> list[Tensor]``: the RD distortion target; for VoxelNeXt every head
  branch's output features, so every quantized layer (backbone, ``conv_out``, ``shared_conv``,
  heads) is seen by it.

Steps, each driven by the :class:`~rdoq_plugins.QuantConfig`: wrap every spconv / torch layer
(activation quantizers at layer inputs) -> calibrate -> with an ``rdoq`` section: RD curves per
channel group, an allocation per target rate, the additivity check and the ``apply_rate``
allocation applied -> with a ``recon`` section: QDrop reconstruction of every unit
(:func:`pcdet_ext.units.sparse_units`) in forward order, through :class:`pcdet_ext.sparse_io.SparseUnitIO`.
A reconstruction step reads one whole calibration batch (its voxels belong together), so
``recon.batch_size`` does not apply here; the batch size of the calibration batches does.

Quantized checkpoints (:func:`save_quantized` / :func:`load_quantized`) hold the state dict and the
validated quant config; loading rebuilds the quantized structure from a fresh FP model and loads
strictly: a missing, unexpected or renamed key is an error (OpenPCDet's own
``load_params_from_file`` only logs mismatches).
"""
from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from pcdet_ext.sparse_io import SparseUnitIO
from pcdet_ext.units import sparse_units
from rdoq_plugins import ActPosition, QDropReconstructor, QuantConfig, QuantLayer, calibrate, quantize_model
from rdoq_plugins.config import ConfigError
from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.files import atomic_save, load_strict
from rdoq_plugins.modules import set_quant_state
from rdoq_plugins.rd import CurveStore, apply_choice, curve_table, spec_hash
from rdoq_plugins.rd.run import additivity, allocate_rates, compute_curves, measure_allocations, rd_layers
from rdoq_plugins.recon import call_order, reconstruct_units
from rdoq_plugins.recon.select import select_units
from rdoq_plugins.report import bit_stats

B = TypeVar("B")
Run = Callable[[nn.Module, Any], Any]
Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]
FORMAT = "rdoq-plugins/quantized-sparse-detector/v1"
CURVE_KEYS = ("estimator", "weight_group", "act_group", "weight_bits", "weight_ratios", "act_bits", "act_ratios",
              "projections", "kappa", "seed", "calib_images")


def quantize_sparse_model(model: nn.Module, qcfg: QuantConfig) -> dict[str, QuantLayer]:
    """Wraps every registered layer of ``model`` (BN folded) in place, activation quantizers at the
    layer inputs; per-layer overrides of ``qcfg`` may leave layers FP. Deterministic given
    ``qcfg``, so :func:`load_quantized` rebuilds the same structure."""
    if any(isinstance(m, QuantLayer) for m in model.modules()):
        raise ValueError("the model is quantized already")
    wrapped = quantize_model(model, qcfg, ActPosition.INPUT)
    if not wrapped:
        raise ConfigError("overrides", "no layer of the model is left to quantize", None)
    return wrapped


def curve_store(curve_dir: Path, cfg: RDOQConfig, data_key: str = "") -> CurveStore:
    """The folder of stored curves for these curve settings and ``data_key`` (model, checkpoint,
    data): the same for :func:`allocate_bits` and the single-step RDOQ tools."""
    settings = {k: v for k, v in cfg.to_dict().items() if k in CURVE_KEYS}
    return CurveStore(curve_dir, spec_hash(settings, data_key))


def curve_batches(batches: Sequence[Any], cfg: RDOQConfig, images: Callable[[Any], int]) -> list[Any]:
    """The first batches holding ``calib_images`` frames (all when unset)."""
    if cfg.calib_images is None:
        return list(batches)
    per_batch = max(1, images(batches[0]))
    return list(batches[: max(1, math.ceil(cfg.calib_images / per_batch))])


def allocate_bits(model: nn.Module, batches: Sequence[Any], outputs: Outputs, qcfg: QuantConfig, curve_dir: Path,
                  data_key: str = "", images: Callable[[Any], int] = lambda b: 1,
                  progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None) -> dict[str, Any]:
    """RD curves (stored under ``curve_dir`` and reused by a rerun with the same settings and
    ``data_key``), one allocation per target rate, the additivity check, then the ``apply_rate``
    allocation applied to ``model``. Returns the report's ``rdoq`` part."""
    cfg = qcfg.rdoq
    if cfg is None:
        raise ValueError("allocate_bits needs an 'rdoq' section in the quant config")
    layers = rd_layers({n: m for n, m in model.named_modules() if isinstance(m, QuantLayer)}, qcfg)
    store = curve_store(curve_dir, cfg, data_key)
    rd_batches = curve_batches(batches, cfg, images)
    start = time.perf_counter()
    curves, computed = compute_curves(model, layers, rd_batches, outputs, cfg, store, images, progress)
    curve_s = time.perf_counter() - start
    start = time.perf_counter()
    table = curve_table(list(curves.values()), cfg.min_bits)
    allocs = allocate_rates(table, cfg)
    alloc_s = time.perf_counter() - start
    measure_s = 0.0
    if cfg.additivity:
        start = time.perf_counter()
        measure_allocations(model, layers, table, allocs, rd_batches, outputs)
        measure_s = time.perf_counter() - start
    chosen = next(a for a in allocs if a.target_rate == cfg.apply_rate)
    layer_bits = apply_choice(layers, table, chosen.choice)
    return {
        "target": cfg.target.value, "estimator": cfg.estimator.value, "solver": cfg.solver,
        "apply_rate": cfg.apply_rate, "elements": table.elements, "groups": len(table.rate),
        "curves": {"dir": str(store.dir), "computed": computed, "reused": len(curves) - computed,
                   "layers": len(layers), "frames": sum(images(b) for b in rd_batches)},
        "rates": [a.summary() for a in allocs], "additivity": additivity(allocs),
        "applied": {"avg_bits": chosen.avg_bits, "kind_bits": chosen.kind_bits, "layer_bits": layer_bits},
        "timings": {"curves_s": curve_s, "allocate_s": alloc_s, "additivity_s": measure_s},
    }


def quantize_sparse_detector(
    model: nn.Module,
    fp_model: nn.Module,
    batches: Sequence[B],
    run: Run,
    outputs: Outputs,
    qcfg: QuantConfig,
    work_dir: Path | None = None,
    data_key: str = "",
    images: Callable[[B], int] = lambda b: 1,
    seed: int = 1005,
    max_cache_bytes: int = 4 << 30,
    progress: Callable[[str], Callable[[Iterable[Any]], Iterable[Any]]] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantizes ``model`` in place: wrap, calibrate, optional RDOQ allocation, optional QDrop.

    Args:
        model: the FP detector with BN folded (e.g. a deep copy of ``fp_model``); wrapped here.
        fp_model: the FP reference with BN folded the same way (left unchanged).
        batches: calibration batches (all are used for calibration and reconstruction).
        run: ``run(model, batch)``, one forward pass.
        outputs: ``outputs(model, batch)``, the RD distortion target's tensors.
        qcfg: the validated quant config (``rdoq`` and ``recon`` sections optional).
        work_dir: where RD curves (``rd_curves/``) and spilled reconstruction caches go; a
            temporary folder if None.
        data_key: identifies model, checkpoint and data for reusing stored curves.
        images: frames in a batch (the RD report and ``rdoq.calib_images`` count them).
        seed: the reconstruction's random seed.
        max_cache_bytes: memory budget of one unit's reconstruction cache (the rest spills).
        progress: ``progress(stage)`` returns a wrapper for that stage's loop (a progress bar).

    Returns:
        ``model`` and the report: bits, timings, RD allocations with the additivity check, units.
    """
    if not batches:
        raise ValueError("no calibration batches")
    for p in fp_model.parameters():
        p.requires_grad_(False)
    report: dict[str, Any] = {"frames": sum(images(b) for b in batches), "batches": len(batches)}
    timings: dict[str, float] = {}
    wrapped = quantize_sparse_model(model, qcfg)
    report["quantized_layers"] = len(wrapped)
    start = time.perf_counter()
    calibrate(model, batches, run, progress=progress("calibrate") if progress else None)
    timings["calibrate_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="rdoq-pcdet-") as tmp:
        root = work_dir if work_dir is not None else Path(tmp)
        if qcfg.rdoq is not None:
            with torch.enable_grad():
                report["rdoq"] = allocate_bits(model, batches, outputs, qcfg, root / "rd_curves", data_key, images,
                                               progress("rd_curves") if progress else None)
            timings.update(report["rdoq"]["timings"])
        if qcfg.recon is not None:
            start = time.perf_counter()
            units = sparse_units(model)
            order = call_order(model, select_units(list(units), qcfg.recon.exclude), batches[0], run)
            device = next(model.parameters()).device
            on_device = qcfg.recon.keep_gpu and device.type == "cuda"
            with torch.enable_grad():
                stats = reconstruct_units(model, fp_model, order, batches, run, QDropReconstructor(qcfg.recon, seed),
                                          progress=progress, max_cache_bytes=max_cache_bytes,
                                          cache_device=device if on_device else "cpu",
                                          spill_dir=root / "recon_cache", io=SparseUnitIO())
            timings["reconstruct_s"] = time.perf_counter() - start
            report["recon"] = {name: {"kind": units[name].value, "iters": s.iters, "first_loss": s.first_loss,
                                      "final_loss": s.final_loss, "stopped_early": s.stopped_early}
                               for name, s in stats.items()}
    set_quant_state(model, weight=True, act=True)
    model.eval()
    report["bits"] = bit_stats(model)
    report["timings"] = timings
    return model, report


# ---------------------------------------------------------------------------------------------
# Quantized checkpoints
# ---------------------------------------------------------------------------------------------
def save_quantized(model: nn.Module, qcfg: QuantConfig, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Writes ``{"state_dict", "meta": {"quant": qcfg, "format", **meta}}``, readable with
    ``torch.load(weights_only=True)``; written to a temporary sibling, then renamed."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {"state_dict": state, "meta": {**(meta or {}), "quant": qcfg.to_dict(), "format": FORMAT}}
    atomic_save(ckpt, path)


def load_quantized(model: nn.Module, path: Path, extra_keys: Sequence[str] = ()) -> tuple[nn.Module, QuantConfig]:
    """Loads a quantized checkpoint into ``model``, a freshly built FP structure with BN folded
    (no weights needed): wraps it with the stored quant config, then loads strictly. No calibration
    runs; the result evaluates as the saved model did."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a quantized sparse-detector checkpoint (format {meta.get('format')!r})")
    qcfg = QuantConfig.from_dict(meta["quant"], extra_keys=extra_keys)
    quantize_sparse_model(model, qcfg)
    device = next(model.parameters()).device
    load_strict(model, ckpt["state_dict"], f"quantized checkpoint {path}")  # switches and rounding included
    return model.to(device).eval(), qcfg
