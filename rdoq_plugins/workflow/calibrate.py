"""Step 1: calibration (QDrop's order: activation ranges on FP activations, then weights)."""
from __future__ import annotations

import time

from rdoq_plugins.calibration import calibrate
from rdoq_plugins.finite import check_quantizers
from rdoq_plugins.workflow.run_state import save_state
from rdoq_plugins.workflow.session import Session


def calibrate_step(session: Session) -> None:
    """Calibrates every quantizer on the session's batches, merges the ranges of all ranks and
    saves the state; skipped when the session resumed a state past calibration."""
    if session.resumed is not None:
        session.logger.info("calibration: resumed from the saved state (%s)", session.resumed.stage)
        return
    start = time.time()
    calibrate(session.model, session.batches, session.adapter.run,
              progress=session.progress("calibrate", len(session.batches)))
    session.dist.reduce_observers(session.model)
    check_quantizers(session.model, "calibration")
    session.result.add_time("calibrate", time.time() - start)
    save_state(session, "calibrated", [])
