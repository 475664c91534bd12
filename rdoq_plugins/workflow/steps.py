"""The workflow: calibrate -> RD curves -> allocate -> reconstruct, checked before any long work.

Each step is a function of a :class:`~rdoq_plugins.workflow.session.Session`; the framework
adapters run them in order (as test-loop hooks, one step each, or all at once with
:func:`run_steps`). :func:`check_steps` runs every cheap check and cost projection first, so a
bad setting stops a run before the FP evaluation or calibration.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import torch

from rdoq_plugins.config import QuantConfig
from rdoq_plugins.recon.select import select_units
from rdoq_plugins.workflow.allocate import allocate_step
from rdoq_plugins.workflow.calibrate import calibrate_step
from rdoq_plugins.workflow.curves import allocated_layers, curves_step, rdoq_section
from rdoq_plugins.workflow.reconstruct import plan_reconstruction, reconstruct_step
from rdoq_plugins.workflow.session import Session
from rdoq_plugins.workflow.tool_settings import other_curves_note


class Step(str, Enum):
    CALIBRATE = "calibrate"
    CURVES = "curves"
    ALLOCATE = "allocate"
    RECONSTRUCT = "reconstruct"


RUN: dict[Step, Callable[[Session], None]] = {
    Step.CALIBRATE: calibrate_step,
    Step.CURVES: curves_step,
    Step.ALLOCATE: allocate_step,
    Step.RECONSTRUCT: reconstruct_step,
}
ORDER = list(Step)


def default_steps(qcfg: QuantConfig) -> list[Step]:
    """Calibration, then RD curves and bit allocation with an ``rdoq`` section, then
    reconstruction with a ``recon`` section."""
    steps = [Step.CALIBRATE]
    if qcfg.rdoq is not None:
        steps += [Step.CURVES, Step.ALLOCATE]
    if qcfg.recon is not None:
        steps.append(Step.RECONSTRUCT)
    return steps


def method_name(steps: Sequence[Step]) -> str:
    """``rdoq``, ``rdoq+qdrop``, ``qdrop`` or ``ptq`` (calibration only), from the steps that run."""
    recon = Step.RECONSTRUCT in steps
    if Step.ALLOCATE in steps:
        return "rdoq+qdrop" if recon else "rdoq"
    return "qdrop" if recon else "ptq"


def check_order(steps: Sequence[Step]) -> None:
    """Steps run in workflow order, each at most once, allocation only after curves."""
    positions = [ORDER.index(s) for s in steps]
    if positions != sorted(set(positions)):
        raise ValueError(f"steps {[s.value for s in steps]} are not in the order {[s.value for s in ORDER]}")
    if Step.ALLOCATE in steps and Step.CURVES not in steps:
        raise ValueError("the allocate step needs the curves step before it")


def check_steps(session: Session, steps: Sequence[Step]) -> None:
    """The checks each step can make before any long work (units, layers, disk space, the
    target rates within the curves' bits), and a warning when the work dir's stored curves are
    not this run's."""
    check_order(steps)
    if Step.RECONSTRUCT in steps:
        plan_reconstruction(session)
    elif session.qcfg.recon is not None:  # recon.exclude names real units even when another tool runs
        select_units(session.adapter.units(session.model), session.qcfg.recon.exclude)
    if Step.CURVES in steps or Step.ALLOCATE in steps:
        rdoq_section(session).check_rates()  # the target rates lie within the curves' bits
        allocated_layers(session)
    if Step.CURVES in steps:
        note = other_curves_note(session)
        if note is not None:
            session.logger.warning(note)


def run_step(session: Session, step: Step) -> None:
    """One step, gradients enabled (detection frameworks evaluate under ``no_grad``); the
    session's result marks it running, so a state saved mid-step counts its time so far."""
    session.result.start_step(step.value)
    try:
        with torch.enable_grad():
            RUN[step](session)
    finally:
        session.result.stop_step()


def run_steps(session: Session, steps: Sequence[Step]) -> None:
    """:func:`check_steps`, then every step in order."""
    check_steps(session, steps)
    for step in steps:
        run_step(session, step)
