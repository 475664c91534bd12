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
from rdoq_plugins.modules import quantizers
from rdoq_plugins.recon import ChunkCache, cache_unit, call_order
from rdoq_plugins.recon.select import select_units

STATE_FILE = "quant_state/state.pth"


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

    Args:
        cache_gb: memory budget of one unit's input / output cache; the rest spills to the work dir.
    """

    priority = "NORMAL"

    def __init__(self, cache_gb: float = 4.0) -> None:
        self.cache_gb = cache_gb

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
        units = select_units(call_order(runner.model, detector_units(runner.model), runner.batches[0], runner.run),
                             cfg.exclude)
        todo = [u for u in units if u not in done]
        if done:
            runner.logger.info("reconstruction: resuming after %d of %d units", len(done), len(units))
        recon = QDropReconstructor(cfg, grad_hook=average_gradients, loss_reduce=mean_over_ranks)
        on_device = cfg.keep_gpu and runner.device.type == "cuda"
        for i, name in enumerate(todo, start=len(done) + 1):
            with ChunkCache(runner.device if on_device else "cpu", int(self.cache_gb * 2**30),
                            runner.work_dir / "quant_state") as cache:
                cache_unit(runner.model, runner.fp_model, name, runner.batches, runner.run, cache)
                bar = None
                if runner.rank == 0:
                    desc = f"[{i}/{len(units)}] {name}"
                    bar = lambda it, d=desc: tqdm(it, desc=d, total=cfg.iters, mininterval=2.0)  # noqa: E731
                stats = recon(runner.model.get_submodule(name), cache, bar)
            runner.recon_stats[name] = {"iters": stats.iters, "first_loss": stats.first_loss,
                                        "final_loss": stats.final_loss, "stopped_early": stats.stopped_early}
            done.append(name)
            runner.save_state("recon", done)
        runner.timings["reconstruct"] = runner.timings.get("reconstruct", 0.0) + time.time() - start
