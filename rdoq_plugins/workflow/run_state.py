"""The resumable state of a run: the quantized model after each finished step or unit.

``work_dir/quant_state/state.pth`` holds the state dict, the last finished stage, the finished
reconstruction units and their figures, the run's hash, the seconds per step of every attempt so far
(``timings``) and the attempt count (``attempts``); a rerun with the same hash continues after the
last finished unit and counts one attempt more, another run starts afresh. States written before
``timings`` and ``attempts`` existed load as one earlier attempt of unknown time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rdoq_plugins.files import atomic_save, load_strict
from rdoq_plugins.workflow.session import Session, UnitResult

STATE_FILE = "quant_state/state.pth"
STAGES = ("calibrated", "allocated", "recon")  # in the order a run passes them


@dataclass
class ResumePoint:
    """Where a saved state left off."""

    stage: str
    done_units: list[str] = field(default_factory=list)

    def passed(self, stage: str) -> bool:
        """Whether the saved state is at or after ``stage``."""
        return STAGES.index(self.stage) >= STAGES.index(stage)


def state_path(work_dir: Path) -> Path:
    return work_dir / STATE_FILE


def save_state(session: Session, stage: str, done_units: list[str]) -> None:
    """Saves the quantized model after a stage or unit (rank 0 writes; every rank waits)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    if session.dist.rank == 0:
        units = {k: v.to_dict() for k, v in session.result.recon_units.items()}
        result = session.result
        atomic_save({"state_dict": session.model.state_dict(), "stage": stage, "done_units": list(done_units),
                     "run_hash": session.run_hash, "recon_stats": units, "timings": result.total_timings(),
                     "attempts": result.attempts}, state_path(session.work_dir))
    session.dist.barrier()


def resume(session: Session) -> ResumePoint | None:
    """Loads the work dir's state into ``session`` if it belongs to the same run."""
    path = state_path(session.work_dir)
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("run_hash") != session.run_hash:
        session.logger.warning("%s belongs to another run (config or checkpoint changed); starting afresh", path)
        return None
    load_strict(session.model, state["state_dict"], f"resume state {path}")
    session.model.to(session.device)
    point = ResumePoint(state["stage"], list(state["done_units"]))
    session.result.recon_units.update({k: UnitResult.from_dict(v) for k, v in state.get("recon_stats", {}).items()})
    session.result.earlier_timings = {str(k): float(v) for k, v in state.get("timings", {}).items()}
    session.result.attempts = int(state.get("attempts", 1)) + 1  # a state without the count: one attempt
    session.resumed = point
    return point
