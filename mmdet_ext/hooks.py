"""Quantization hooks for mmdet 2.28's test loop, registered in mmcv's ``HOOKS`` registry.

mmdet 2.28 has no test-time hooks, so ``tools/test.py`` (and ``tools/recon.py``) build the hooks
listed in the config's ``quant.hooks`` and call their ``before_test`` stage, in priority order,
after the checkpoint is loaded and before the test loop. As in mmcv 1.x, a hook method takes one
argument, here a :class:`QuantContext`. Gradients are enabled inside the hooks.

Config::

    quant = dict(
        w_qconfig=dict(bit=4), a_qconfig=dict(bit=4), calibrate=256,
        hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook')])
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmcv.runner import HOOKS, Hook
from torch import nn
from tqdm import tqdm

from mmdet_ext.detector import DetectorRun, detector_units
from mmdet_ext.dist import average_gradients, barrier, mean_over_ranks, reduce_observers
from mmdet_ext.state import atomic_save
from rdoq_plugins import QDropReconstructor, QuantConfig, calibrate
from rdoq_plugins.config import ConfigError
from rdoq_plugins.modules import quantizers
from rdoq_plugins.recon import (
    ChunkCache,
    UnitSurvey,
    cache_unit,
    check_disk,
    cost_summary,
    gpu_cache_bytes,
    plan_cache,
    remove_stale_spills,
    survey_units,
)
from rdoq_plugins.recon.select import select_units

STATE_FILE = "quant_state/state.pth"
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class QuantContext:
    """What the quantization hooks work on (the ``runner`` argument of their stages)."""

    model: nn.Module
    fp_model: nn.Module
    qcfg: QuantConfig
    work_dir: Path
    batches: list[Any]
    run: DetectorRun
    device: torch.device
    run_hash: str
    rank: int = 0
    world: int = 1
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("rdoq_plugins"))
    timings: dict[str, float] = field(default_factory=dict)
    recon_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    resumed: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    rdoq: dict[str, Any] = field(default_factory=dict)
    survey: list[UnitSurvey] = field(default_factory=list)
    recon_cost: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.work_dir / STATE_FILE

    def save_state(self, stage: str, done_units: list[str]) -> None:
        """Atomically saves the quantized model after a stage or unit (rank 0 writes)."""
        if self.rank == 0:
            atomic_save({"state_dict": self.model.state_dict(), "stage": stage, "done_units": list(done_units),
                         "run_hash": self.run_hash, "recon_stats": self.recon_stats}, self.state_path)
        barrier()


class QuantHook(Hook):
    """Base quantization hook: one ``before_test(runner)`` stage, a no-op by default."""

    priority = "NORMAL"

    def check(self, runner: QuantContext) -> None:
        """Runs before any hook's work: checks what can be checked cheaply, projects costs."""

    def before_test(self, runner: QuantContext) -> None:
        """Runs after the checkpoint is loaded and before the test loop."""


@HOOKS.register_module()
class QuantCalibHook(QuantHook):
    """Calibration: activation ranges on FP activations, then weights (QDrop's order). Skipped
    when the work dir holds a resumable state of the same run.

    Config: ``dict(type='QuantCalibHook')``; the image count is the quant config's ``calibrate``.
    """

    priority = "VERY_HIGH"

    def before_test(self, runner: QuantContext) -> None:
        if runner.resumed.get("stage") is not None:
            runner.logger.info("calibration: resumed from %s", runner.state_path)
            return
        start = time.time()
        bar = None
        if runner.rank == 0:
            bar = lambda it: tqdm(it, desc="calibrate", total=len(runner.batches), mininterval=2.0)  # noqa: E731
        calibrate(runner.model, runner.batches, runner.run, progress=bar)
        reduce_observers(runner.model)
        runner.timings["calibrate"] = time.time() - start
        runner.save_state("calibrated", [])


@HOOKS.register_module()
class QDropReconHook(QuantHook):
    """QDrop block reconstruction of every unit, in forward order, saving the state after each unit;
    a rerun with the same work dir continues after the last finished unit.

    Config: ``dict(type='QDropReconHook', cache_gb=4.0)``; hyper-parameters come from ``recon``.
    Before any work (:meth:`check`), one FP pass over the first batch projects every unit's cache
    at the configured ``calibrate``; the projection goes to ``report.json`` (``recon_cache``) and a
    run whose spill would not fit on the disk stops there (:mod:`rdoq_plugins.recon.cost`).

    Args:
        cache_gb: CPU-memory budget of one unit's cache (pinned when the model is on a GPU).
        gpu_cache_gb: GPU budget of one unit's cache when ``recon.keep_gpu`` is on and the model is
            on a GPU; None takes the free GPU memory less a reserve for the optimisation step.
        cache_dtype: dtype cached activations are stored in: ``float16`` (default; half the bytes
            of float32, chunks whose values overflow it stay float32), ``bfloat16`` or ``float32``.
        disk_passes: how often each spilled chunk is read from disk over a unit's iterations.
    """

    priority = "NORMAL"

    def __init__(self, cache_gb: float = 4.0, gpu_cache_gb: float | None = None, cache_dtype: str = "float16",
                 disk_passes: int = 2) -> None:
        where = "hooks.QDropReconHook"
        if isinstance(cache_gb, bool) or not isinstance(cache_gb, (int, float)) or cache_gb < 0:
            raise ConfigError(f"{where}.cache_gb", "expected a number >= 0", cache_gb)
        if gpu_cache_gb is not None and (isinstance(gpu_cache_gb, bool) or not isinstance(gpu_cache_gb, (int, float))
                                         or gpu_cache_gb < 0):
            raise ConfigError(f"{where}.gpu_cache_gb", "expected a number >= 0 or None", gpu_cache_gb)
        if cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"{where}.cache_dtype", "unknown dtype", cache_dtype, ", ".join(CACHE_DTYPES))
        if isinstance(disk_passes, bool) or not isinstance(disk_passes, int) or disk_passes < 1:
            raise ConfigError(f"{where}.disk_passes", "expected an integer >= 1", disk_passes)
        self.cache_gb = cache_gb
        self.gpu_cache_gb = gpu_cache_gb
        self.cache_dtype = CACHE_DTYPES[cache_dtype]
        self.disk_passes = disk_passes

    def spill_dir(self, runner: QuantContext) -> Path:
        return runner.work_dir / "quant_state" / f"spill_rank{runner.rank}"

    def budgets(self, runner: QuantContext) -> tuple[torch.device, int, int]:
        """``(first tier's device, its bytes, CPU bytes after it)``."""
        host = int(self.cache_gb * 2**30)
        assert runner.qcfg.recon is not None
        if not (runner.qcfg.recon.keep_gpu and runner.device.type == "cuda"):
            return torch.device("cpu"), host, 0
        if self.gpu_cache_gb is not None:
            return runner.device, int(self.gpu_cache_gb * 2**30), host
        free, total = torch.cuda.mem_get_info(runner.device)
        return runner.device, int(gpu_cache_bytes(free, total)), host

    def check(self, runner: QuantContext) -> None:
        """Surveys the units on the first batch and projects the cache; refuses a run whose spill
        does not fit on the disk."""
        cfg = runner.qcfg.recon
        if cfg is None:
            raise ValueError("QDropReconHook needs a 'recon' section in the quant config")
        names = detector_units(runner.model)
        runner.survey = survey_units(runner.fp_model, names, runner.batches[0], runner.run)
        units = set(select_units([s.name for s in runner.survey], cfg.exclude))
        device, first, host = self.budgets(runner)
        element = torch.empty((), dtype=self.cache_dtype).element_size()
        images = math.ceil(runner.qcfg.calibrate / runner.world)
        plans = plan_cache([s for s in runner.survey if s.name in units], runner.run.images(runner.batches[0]),
                           images, element, first, host)
        tiers = {"device": str(device), "device_gb": round(first / 2**30, 2), "host_gb": round(host / 2**30, 2),
                 "dtype": str(self.cache_dtype).replace("torch.", "")}
        runner.recon_cost = cost_summary(plans, images, cfg.iters, self.disk_passes, tiers)
        c = runner.recon_cost
        runner.logger.info("reconstruction cache at %d images per process (%s): largest unit %s %.2f GB; "
                           "disk needed %.2f GB, read %.1f GB over the run", images, c["tiers"]["dtype"],
                           c["largest_unit"], c["largest_unit_gb"], c["disk_needed_gb"], c["disk_read_gb"])
        check_disk(plans, self.spill_dir(runner))

    def before_test(self, runner: QuantContext) -> None:
        cfg = runner.qcfg.recon
        if cfg is None:
            raise ValueError("QDropReconHook needs a 'recon' section in the quant config")
        uncalibrated = [q for q in quantizers(runner.model) if int(q.observer.num_batches) == 0]
        if uncalibrated:
            raise RuntimeError(f"QDropReconHook: {len(uncalibrated)} quantizers are not calibrated; "
                               "list QuantCalibHook before it (higher priority)")
        start = time.time()
        done = list(runner.resumed.get("done_units", []))
        if not runner.survey:
            runner.survey = survey_units(runner.fp_model, detector_units(runner.model), runner.batches[0], runner.run)
        calls = {s.name: s.calls for s in runner.survey}
        units = select_units([s.name for s in runner.survey], cfg.exclude)
        todo = [u for u in units if u not in done]
        if done:
            runner.logger.info("reconstruction: resuming after %d of %d units", len(done), len(units))
        spill = self.spill_dir(runner)
        if remove_stale_spills(spill):
            runner.logger.info("reconstruction: removed the spill folder a killed run left in %s", spill)
        recon = QDropReconstructor(cfg, grad_hook=average_gradients, loss_reduce=mean_over_ranks)
        for i, name in enumerate(todo, start=len(done) + 1):
            device, first, host = self.budgets(runner)
            with ChunkCache(device, first, spill, host_bytes=host, store_dtype=self.cache_dtype,
                            compute_device=runner.device, disk_passes=self.disk_passes) as cache:
                cache_unit(runner.model, runner.fp_model, name, runner.batches, runner.run, cache,
                           num_calls=calls[name])
                bar = None
                if runner.rank == 0:
                    desc = f"[{i}/{len(units)}] {name}"
                    bar = lambda it, d=desc: tqdm(it, desc=d, total=cfg.iters, mininterval=2.0)  # noqa: E731
                stats = recon(runner.model.get_submodule(name), cache, bar)
                runner.recon_stats[name] = {"iters": stats.iters, "first_loss": stats.first_loss,
                                            "final_loss": stats.final_loss, "stopped_early": stats.stopped_early,
                                            "cache": cache.stats()}
            done.append(name)
            runner.save_state("recon", done)
        runner.timings["reconstruct"] = runner.timings.get("reconstruct", 0.0) + time.time() - start
