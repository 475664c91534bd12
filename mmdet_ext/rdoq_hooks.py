"""RDOQ hooks for mmdet 2.28's test loop: RD curves, then the bit allocation.

They run between calibration and QDrop reconstruction (mmcv priorities ``HIGH`` and
``ABOVE_NORMAL``), so one ``tools/test.py`` command computes curves, allocates bits, optionally
reconstructs on the mixed-precision grids and evaluates (Wang et al., "RDO-Q", ECCV 2022; QDrop,
Wei et al., ICLR 2022). Curves are stored per layer in ``work_dir/rd_curves/<hash>/`` and reused by
a rerun; allocations go to ``work_dir/rd_alloc/``.

Config::

    quant = dict(
        rdoq=dict(target='weight', target_rates=[3], solver='dp'),
        hooks=[dict(type='QuantCalibHook'), dict(type='RDCurvesHook'), dict(type='BitAllocHook'),
               dict(type='QDropReconHook')])
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from mmcv.runner import HOOKS
from tqdm import tqdm

from mmdet_ext.dist import barrier, tensor_mean_over_ranks
from mmdet_ext.hooks import QuantContext, QuantHook
from mmdet_ext.state import atomic_write_text
from rdoq_plugins import QuantLayer
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.rd import (
    CurveStore,
    CurveTable,
    LayerCurve,
    TensorKind,
    apply_choice,
    curve_table,
    spec_hash,
)
from rdoq_plugins.rd.alloc_output import alloc_summary, write_allocations
from rdoq_plugins.rd.run import (
    RateAllocation,
    allocate_rates,
    compute_curves,
    curve_keys,
    measure_allocations,
    rd_layers,
)

CURVE_DIR = "rd_curves"
ALLOC_DIR = "rd_alloc"
CURVE_KEYS = ("estimator", "weight_group", "act_group", "weight_bits", "weight_ratios", "act_bits", "act_ratios",
              "projections", "kappa", "seed", "calib_images")


def rdoq_section(runner: QuantContext, hook: str) -> RDOQConfig:
    if runner.qcfg.rdoq is None:
        raise ValueError(f"{hook} needs an 'rdoq' section in the quant config")
    return runner.qcfg.rdoq


def curve_store(work_dir: Path, cfg: RDOQConfig, data_hash: str, scores: bool) -> CurveStore:
    """The curve folder of these curve settings, distortion target (``scores``) and model / data.
    Curves on the logits keep the hash they had before the target could be chosen."""
    settings = {k: v for k, v in cfg.to_dict().items() if k in CURVE_KEYS}
    return CurveStore(work_dir / CURVE_DIR, spec_hash(settings, data_hash, *(["scores"] if scores else [])))


def curve_batches(runner: QuantContext, cfg: RDOQConfig) -> list[Any]:
    """The first calibration batches holding ``calib_images`` images (all when unset)."""
    if cfg.calib_images is None:
        return list(runner.batches)
    per_batch = max(1, runner.run.images(runner.batches[0]))
    return list(runner.batches[: max(1, math.ceil(cfg.calib_images / runner.world / per_batch))])


def allocated_layers(runner: QuantContext) -> dict[str, QuantLayer]:
    layers = {n: m for n, m in runner.model.named_modules() if isinstance(m, QuantLayer)}
    return rd_layers(layers, runner.qcfg)


@HOOKS.register_module()
class RDCurvesHook(QuantHook):
    """Rate-distortion curves per channel group of every allocated layer (second-order or measured,
    per ``rdoq.estimator``), on the FP model, with the FPN outputs and head outputs as the target.

    Config: ``dict(type='RDCurvesHook')``; settings come from the quant config's ``rdoq`` section.
    """

    priority = "HIGH"

    def before_test(self, runner: QuantContext) -> None:
        cfg = rdoq_section(runner, "RDCurvesHook")
        start = time.time()
        layers = allocated_layers(runner)
        store = curve_store(runner.work_dir, cfg, runner.data_hash, runner.run.scores)
        batches = curve_batches(runner, cfg)
        bar = None
        if runner.rank == 0:
            bar = lambda it: tqdm(it, desc=f"RD curves ({cfg.estimator.value})", mininterval=2.0)  # noqa: E731
        curves, computed = compute_curves(
            runner.model, layers, batches, runner.run.targets, cfg, store, runner.run.images, bar,
            reduce_mean=tensor_mean_over_ranks if runner.world > 1 else None, writer=runner.rank == 0)
        barrier()
        elapsed = time.time() - start
        info_path = store.dir / "info.json"
        spent = json.loads(info_path.read_text())["compute_time_s"] if info_path.is_file() else 0.0
        if computed and runner.rank == 0:  # what computing these curves cost, over all runs that did
            spent += elapsed
            atomic_write_text(json.dumps({"compute_time_s": spent}) + "\n", info_path)
        runner.rdoq["curves"] = curves
        runner.rdoq["curve_info"] = {"dir": str(store.dir), "computed": computed, "reused": len(curves) - computed,
                                     "layers": len(layers), "groups": sum(c.num_groups for c in curves.values()),
                                     "images": sum(runner.run.images(b) for b in batches) * runner.world,
                                     "compute_time_s": round(spent, 2)}
        runner.timings["curves"] = runner.timings.get("curves", 0.0) + elapsed
        runner.logger.info("RD curves: %d computed, %d reused (%s)", computed, len(curves) - computed, store.dir)


def load_curves(runner: QuantContext, cfg: RDOQConfig) -> dict[tuple[str, TensorKind], LayerCurve]:
    """The curves of this run: from :class:`RDCurvesHook`, or all from the work dir's store."""
    if "curves" in runner.rdoq:
        return runner.rdoq["curves"]  # type: ignore[no-any-return]
    layers = allocated_layers(runner)
    store = curve_store(runner.work_dir, cfg, runner.data_hash, runner.run.scores)
    keys = curve_keys(layers, cfg.target)
    missing = store.missing(keys)
    if missing:
        raise FileNotFoundError(f"{len(missing)} RD curves are missing from {store.dir} (e.g. {missing[0][0]}); "
                                "run tools/gen_rd_curves.py with the same config first, or list RDCurvesHook")
    return {key: store.load(*key) for key in keys}


def run_allocation(runner: QuantContext, cfg: RDOQConfig) -> tuple[CurveTable, list[RateAllocation], dict[str, Any]]:
    """Allocates every target rate, checks additivity (``rdoq.additivity``), and writes
    ``rd_alloc/``: one JSON per rate (with the per-group choices), ``summary.json`` and the plots."""
    layers = allocated_layers(runner)
    table = curve_table(list(load_curves(runner, cfg).values()), cfg.min_bits)
    allocs = allocate_rates(table, cfg)
    if cfg.additivity:
        measure_allocations(runner.model, layers, table, allocs, curve_batches(runner, cfg), runner.run.targets)
    summary = alloc_summary(cfg, table, allocs, runner.rdoq.get("curve_info", {}))
    if runner.rank == 0:
        write_allocations(runner.work_dir / ALLOC_DIR, table, allocs)
    return table, allocs, summary


@HOOKS.register_module()
class BitAllocHook(QuantHook):
    """Bit allocation for every ``rdoq.target_rates`` entry (``rdoq.solver``), the additivity check
    (predicted vs measured output distortion), then ``rdoq.apply_rate``'s allocation applied as
    per-group bits and steps. Skipped on resume when the saved state already holds it.

    Config: ``dict(type='BitAllocHook')``; list ``RDCurvesHook`` before it.
    """

    priority = "ABOVE_NORMAL"

    def before_test(self, runner: QuantContext) -> None:
        cfg = rdoq_section(runner, "BitAllocHook")
        summary_path = runner.work_dir / ALLOC_DIR / "summary.json"
        if runner.resumed.get("stage") in ("allocated", "recon") and summary_path.is_file():
            runner.rdoq["alloc"] = json.loads(summary_path.read_text())
            runner.logger.info("bit allocation: resumed from %s", runner.state_path)
            return
        start = time.time()
        table, allocs, summary = run_allocation(runner, cfg)
        chosen = next(a for a in allocs if a.target_rate == cfg.apply_rate)
        summary["layer_bits"] = apply_choice(allocated_layers(runner), table, chosen.choice)
        runner.rdoq["alloc"] = summary
        if runner.rank == 0:
            atomic_write_text(json.dumps(summary, indent=2) + "\n", summary_path)
        runner.timings["allocate"] = time.time() - start
        runner.save_state("allocated", [])
