"""Step 2: rate-distortion curves per channel group of every allocated layer (Wang et al.,
"RDO-Q", ECCV 2022), stored per layer in ``work_dir/rd_curves/<hash>/`` and reused by any run
with the same curve settings, model, weights and data."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.files import atomic_write_text
from rdoq_plugins.hashing import content_hash
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd import CurveStore, LayerCurve, TensorKind
from rdoq_plugins.rd.layers import compute_curves, curve_keys, rd_layers
from rdoq_plugins.workflow.session import CurveInfo, Session

CURVE_DIR = "rd_curves"
# The rdoq keys a curve depends on (the allocation keys, such as target_rates, do not).
CURVE_SETTINGS = ("estimator", "weight_group", "act_group", "weight_bits", "weight_ratios", "act_bits",
                  "act_ratios", "projections", "kappa", "seed", "calib_images")


def rdoq_section(session: Session) -> RDOQConfig:
    if session.qcfg.rdoq is None:
        raise ValueError("RD curves and bit allocation need an 'rdoq' section in the quant config")
    return session.qcfg.rdoq


def curve_folder(work_dir: Path, cfg: RDOQConfig, data_hash: str, target_tag: str = "") -> CurveStore:
    """The curve folder of these curve settings, model / data (``data_hash``) and distortion
    target (``target_tag``, empty for raw outputs)."""
    settings = {k: v for k, v in cfg.to_dict().items() if k in CURVE_SETTINGS}
    return CurveStore(work_dir / CURVE_DIR, content_hash(settings, data_hash, *([target_tag] if target_tag else [])))


def curve_store(session: Session) -> CurveStore:
    """The curve folder of this run."""
    return curve_folder(session.work_dir, rdoq_section(session), session.data_hash, session.adapter.target_tag)


def curve_batches(session: Session) -> list[Any]:
    """The first calibration batches holding ``rdoq.calib_images`` images over all ranks (all
    batches when unset)."""
    cfg = rdoq_section(session)
    if cfg.calib_images is None:
        return list(session.batches)
    per_batch = max(1, session.adapter.images(session.batches[0]))
    return list(session.batches[: max(1, math.ceil(cfg.calib_images / session.dist.world / per_batch))])


def allocated_layers(session: Session) -> dict[str, QuantLayer]:
    """The quantized layers the allocation covers."""
    layers = {n: m for n, m in session.model.named_modules() if isinstance(m, QuantLayer)}
    return rd_layers(layers, session.qcfg)


def curves_step(session: Session) -> None:
    """Computes the curves the store lacks (each rank its share of the images, averaged) and keeps
    all of them in the session for the allocation."""
    cfg = rdoq_section(session)
    start = time.time()
    layers = allocated_layers(session)
    store = curve_store(session)
    batches = curve_batches(session)
    dist = session.dist
    curves, computed = compute_curves(
        session.model, layers, batches, session.adapter.targets, cfg, store, session.adapter.images,
        session.progress(f"RD curves ({cfg.estimator.value})"),
        reduce_mean=dist.tensor_mean if dist.world > 1 else None, writer=dist.rank == 0)
    dist.barrier()
    elapsed = time.time() - start
    info_path = store.dir / "info.json"
    spent = json.loads(info_path.read_text())["compute_time_s"] if info_path.is_file() else 0.0
    if computed and dist.rank == 0:  # what computing these curves cost, over all runs that did
        spent += elapsed
        atomic_write_text(json.dumps({"compute_time_s": spent}) + "\n", info_path)
    session.curves = curves
    session.result.curves = CurveInfo(
        dir=str(store.dir), computed=computed, reused=len(curves) - computed, layers=len(layers),
        groups=sum(c.num_groups for c in curves.values()),
        images=sum(session.adapter.images(b) for b in batches) * dist.world, compute_time_s=round(spent, 2))
    session.result.add_time("curves", elapsed)
    session.logger.info("RD curves: %d computed, %d reused (%s)", computed, len(curves) - computed, store.dir)


def stored_curves(session: Session) -> dict[tuple[str, TensorKind], LayerCurve]:
    """This run's curves: those of :func:`curves_step`, or all from the work dir's store."""
    if session.curves is not None:
        return session.curves
    store = curve_store(session)
    keys = curve_keys(allocated_layers(session), rdoq_section(session).target)
    missing = store.missing(keys)
    if missing:
        raise FileNotFoundError(f"{len(missing)} RD curves are missing from {store.dir} (e.g. {missing[0][0]}); "
                                "compute them first with the same config and work dir (the RD curves tool "
                                "or the curves step)")
    return {key: store.load(*key) for key in keys}
