"""Step 4: QDrop block reconstruction of every unit in forward order (Wei et al., ICLR 2022),
the state saved after each unit so a rerun continues after the last finished one.

:func:`plan_reconstruction` runs before any long work: one FP pass over the first batch surveys
every unit (forward order, calls, sizes, parallel units sharing an input), projects each unit's
cache over the GPU / CPU / disk tiers and the capture passes, and refuses a run whose spill would
not fit on the disk.
"""
from __future__ import annotations

import math
import time

import torch

from rdoq_plugins.config import ReconConfig
from rdoq_plugins.modules import quantizers
from rdoq_plugins.recon import (
    ChunkCache,
    QDropReconstructor,
    ReconStats,
    check_disk,
    cost_summary,
    gpu_cache_bytes,
    plan_cache,
    reconstruct_units,
    remove_stale_spills,
    survey_units,
)
from rdoq_plugins.recon.select import select_units
from rdoq_plugins.recon.shared_capture import input_groups
from rdoq_plugins.workflow.run_state import save_state
from rdoq_plugins.workflow.session import Progress, Session, UnitResult


def recon_section(session: Session) -> ReconConfig:
    if session.qcfg.recon is None:
        raise ValueError("reconstruction needs a 'recon' section in the quant config")
    return session.qcfg.recon


def cache_budgets(session: Session) -> tuple[torch.device, int, int]:
    """``(first tier's device, its bytes, CPU bytes after it)`` of one unit's cache."""
    opts = session.cache
    host = int(opts.cache_gb * 2**30)
    if not (recon_section(session).keep_gpu and session.device.type == "cuda"):
        return torch.device("cpu"), host, 0
    if opts.gpu_cache_gb is not None:
        return session.device, int(opts.gpu_cache_gb * 2**30), host
    free, total = torch.cuda.mem_get_info(session.device)
    return session.device, int(gpu_cache_bytes(free, total)), host


def survey(session: Session) -> list[str]:
    """The units to reconstruct in forward order (``recon.exclude`` left out), surveyed once."""
    if not session.survey:
        names = session.adapter.units(session.model)
        session.survey = survey_units(session.fp_model, names, session.batches[0], session.adapter.run)
    return select_units([s.name for s in session.survey], recon_section(session).exclude)


def plan_reconstruction(session: Session) -> None:
    """Surveys the units and projects the cache at the configured image count (per process) into
    ``session.result.recon_cost``; raises when the spill would not fit on the disk."""
    cfg = recon_section(session)
    units = set(survey(session))
    device, first, host = cache_budgets(session)
    element = torch.empty((), dtype=session.cache.dtype).element_size()
    images = math.ceil(session.qcfg.calibrate / session.dist.world)
    plans = plan_cache([s for s in session.survey if s.name in units], session.adapter.images(session.batches[0]),
                       images, element, first, host)
    tiers = {"device": str(device), "device_gb": round(first / 2**30, 2), "host_gb": round(host / 2**30, 2),
             "dtype": session.cache.cache_dtype}
    cost = cost_summary(plans, images, cfg.iters, session.cache.disk_passes, tiers)
    order = [s.name for s in session.survey if s.name in units]
    groups = input_groups(session.survey, order)
    passes = 2 * (len(order) - sum(len(g) - 1 for g in groups))
    cost["capture_passes_per_batch"] = passes  # FP + quantized, each up to its unit (or group)
    cost["shared_input_groups"] = [len(g) for g in groups]
    session.result.recon_cost = cost
    session.logger.info("reconstruction cache at %d images per process (%s): largest unit %s %.2f GB; "
                        "disk needed %.2f GB, read %.1f GB over the run; %d units, %d capture passes per batch "
                        "(%d groups of parallel units captured together)", images, tiers["dtype"],
                        cost["largest_unit"], cost["largest_unit_gb"], cost["disk_needed_gb"], cost["disk_read_gb"],
                        len(order), passes, len(groups))
    check_disk(plans, session.spill_dir)


def reconstruct_step(session: Session) -> None:
    """Reconstructs the units the saved state has not finished, saving the state after each."""
    cfg = recon_section(session)
    uncalibrated = [q for q in quantizers(session.model) if int(q.observer.num_batches) == 0]
    if uncalibrated:
        raise RuntimeError(f"reconstruction: {len(uncalibrated)} quantizers are not calibrated; "
                           "calibration must run first")
    start = time.time()
    units = survey(session)
    done = list(session.resumed.done_units) if session.resumed is not None else []
    todo = [u for u in units if u not in done]
    if done:
        session.logger.info("reconstruction: resuming after %d of %d units", len(done), len(units))
    if remove_stale_spills(session.spill_dir):
        session.logger.info("reconstruction: removed the spill folder a killed run left in %s", session.spill_dir)
    calls = {s.name: s.calls for s in session.survey}
    position = {name: i for i, name in enumerate(units, start=1)}

    def new_cache() -> ChunkCache:
        device, first, host = cache_budgets(session)
        return ChunkCache(device, first, session.spill_dir, host_bytes=host, store_dtype=session.cache.dtype,
                          compute_device=session.device, disk_passes=session.cache.disk_passes)

    def progress(name: str) -> Progress | None:
        return session.progress(f"[{position[name]}/{len(units)}] {name}", cfg.iters)

    def finished(name: str, stats: ReconStats, cache: ChunkCache) -> None:
        session.result.recon_units[name] = UnitResult(stats.iters, stats.first_loss, stats.final_loss,
                                                      stats.stopped_early, cache.stats())
        done.append(name)
        save_state(session, "recon", done)

    recon = QDropReconstructor(cfg, session.seed, group=session.dist)
    reconstruct_units(session.model, session.fp_model, todo, session.batches, session.adapter.run, recon,
                      progress=progress, io=session.adapter.unit_io, calls=calls, make_cache=new_cache,
                      on_done=finished, groups=input_groups(session.survey, todo),
                      shared_bytes=int(session.cache.cache_gb * 2**30))
    session.result.add_time("reconstruct", time.time() - start)
