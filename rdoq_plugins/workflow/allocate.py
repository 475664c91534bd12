"""Step 3: bit allocation for every target rate, the additivity check, and one allocation applied
as per-group bits and steps (Wang et al., "RDO-Q", ECCV 2022). ``work_dir/rd_alloc/`` receives
one JSON per rate (with the per-group choices), ``summary.json`` and the plots."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from rdoq_plugins.files import atomic_write_text
from rdoq_plugins.rd import CurveTable, apply_choice, curve_table
from rdoq_plugins.rd.alloc_output import alloc_summary, write_allocations
from rdoq_plugins.rd.rates import RateAllocation, allocate_rates, measure_allocations
from rdoq_plugins.workflow.curves import allocated_layers, curve_batches, rdoq_section, stored_curves
from rdoq_plugins.workflow.run_state import save_state
from rdoq_plugins.workflow.session import Session

ALLOC_DIR = "rd_alloc"


def allocate_all(session: Session) -> tuple[CurveTable, list[RateAllocation], dict[str, Any]]:
    """Allocates every ``rdoq.target_rates`` entry from this run's curves, measures each
    allocation (``rdoq.additivity``) and writes ``rd_alloc/`` with ``summary.json``; returns the
    table, the allocations and the summary. Each allocation's per-layer bits are filled in; the
    model is left with the last one applied."""
    cfg = rdoq_section(session)
    layers = allocated_layers(session)
    table = curve_table(list(stored_curves(session).values()), cfg.min_bits)
    allocs = allocate_rates(table, cfg)
    if cfg.additivity:
        measure_allocations(session.model, layers, table, allocs, curve_batches(session), session.adapter.targets)
    for a in allocs:
        a.layer_bits = apply_choice(layers, table, a.choice)
    curves = asdict(session.result.curves) if session.result.curves is not None else {}
    summary = alloc_summary(cfg, table, allocs, curves)
    if session.dist.rank == 0:
        out = session.work_dir / ALLOC_DIR
        write_allocations(out, table, allocs, optional_plots=True)
        atomic_write_text(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    return table, allocs, summary


def allocate_step(session: Session) -> None:
    """:func:`allocate_all`, then ``rdoq.apply_rate``'s allocation applied to the model and the
    state saved; skipped when the session resumed a state that holds it."""
    cfg = rdoq_section(session)
    summary_path = session.work_dir / ALLOC_DIR / "summary.json"
    if session.resumed is not None and session.resumed.passed("allocated") and summary_path.is_file():
        session.result.allocation = json.loads(summary_path.read_text())
        session.logger.info("bit allocation: resumed from the saved state")
        return
    start = time.time()
    table, allocs, summary = allocate_all(session)
    chosen = next(a for a in allocs if a.target_rate == cfg.apply_rate)
    layer_bits = apply_choice(allocated_layers(session), table, chosen.choice)
    summary["applied"] = {"rate": chosen.target_rate, "avg_bits": chosen.avg_bits, "kind_bits": chosen.kind_bits,
                          "layer_bits": layer_bits}
    session.result.allocation = summary
    if session.dist.rank == 0:
        atomic_write_text(json.dumps(summary, indent=2) + "\n", summary_path)
    session.result.add_time("allocate", time.time() - start)
    save_state(session, "allocated", [])
