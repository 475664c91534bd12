"""The workflow's steps on a small CNN: order, results, resume, and the checks before any work."""
from __future__ import annotations

import json

import pytest
import torch

from rdoq_plugins.modules import quantizers
from rdoq_plugins.recon import QDropReconstructor
from rdoq_plugins.workflow import (
    STATE_FILE,
    ModelAdapter,
    Step,
    check_steps,
    default_steps,
    method_name,
    resume,
    run_steps,
)
from rdoq_plugins.workflow.steps import check_order
from tests.core.workflow.conftest import MakeSession, TinyAdapter

QDROP = {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 8, "recon": {"iters": 3, "batch_size": 2}}
RDOQ = {"target_rates": [2.5], "weight_group": 4, "weight_bits": [2, 3, 4, 6], "weight_ratios": [1.0],
        "projections": 2}


def test_tiny_adapter_is_a_model_adapter() -> None:
    assert isinstance(TinyAdapter(), ModelAdapter)


def test_default_steps_and_method_names() -> None:
    from rdoq_plugins import load_quant_config

    assert default_steps(load_quant_config({"recon": None})) == [Step.CALIBRATE]
    both = default_steps(load_quant_config({**QDROP, "rdoq": RDOQ}))
    assert both == [Step.CALIBRATE, Step.CURVES, Step.ALLOCATE, Step.RECONSTRUCT]
    assert [method_name(s) for s in ([Step.CALIBRATE], both, both[:3], [Step.CALIBRATE, Step.RECONSTRUCT])] == \
        ["ptq", "rdoq+qdrop", "rdoq", "qdrop"]


@pytest.mark.parametrize("steps", [[Step.RECONSTRUCT, Step.CALIBRATE], [Step.CALIBRATE, Step.ALLOCATE],
                                   [Step.CALIBRATE, Step.CALIBRATE]])
def test_steps_out_of_order_are_refused(steps: list[Step]) -> None:
    with pytest.raises(ValueError):
        check_order(steps)


def test_the_whole_workflow_fills_the_typed_result(make_session: MakeSession) -> None:
    session = make_session({**QDROP, "w_qconfig": {"bit": 4}, "rdoq": RDOQ})
    run_steps(session, default_steps(session.qcfg))
    result = session.result
    assert set(result.timings) == {"calibrate", "curves", "allocate", "reconstruct"}
    assert result.curves is not None and result.curves.computed == 3 and result.curves.images == 8
    assert result.allocation is not None and result.allocation["applied"]["avg_bits"] <= 2.5 + 1e-9
    assert list(result.recon_units) == ["0", "2", "4"] and all(u.iters == 3 for u in result.recon_units.values())
    assert result.recon_cost["largest_unit"] in result.recon_units and result.recon_cost["disk_needed_gb"] == 0
    summary = json.loads((session.work_dir / "rd_alloc" / "summary.json").read_text())
    assert summary["applied"] == result.allocation["applied"]
    assert {"rdoq", "recon_units", "recon_cache"} <= set(result.to_dict())
    bits = {float(b) for q in quantizers(session.model, weight=True) for b in q.bits.tolist()}
    assert len(bits) > 1  # mixed precision applied per group


def test_a_killed_run_resumes_after_its_last_unit(make_session: MakeSession, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = make_session(QDROP)
    run_steps(whole, default_steps(whole.qcfg))

    first = make_session(QDROP, work_dir=whole.work_dir.parent / "killed")
    original = QDropReconstructor.__call__
    seen: list[int] = []

    def dies_on_the_second_unit(self, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(QDropReconstructor, "__call__", dies_on_the_second_unit)
    with pytest.raises(KeyboardInterrupt):
        run_steps(first, default_steps(first.qcfg))
    monkeypatch.setattr(QDropReconstructor, "__call__", original)
    assert (first.work_dir / STATE_FILE).is_file()
    state = torch.load(first.work_dir / STATE_FILE, weights_only=True)
    # The killed attempt's time: calibration, and reconstruction up to its last saved unit.
    assert state["attempts"] == 1 and state["timings"]["calibrate"] > 0 and state["timings"]["reconstruct"] > 0

    again = make_session(QDROP, work_dir=first.work_dir)
    point = resume(again)
    assert point is not None and point.stage == "recon" and point.done_units == ["0"]
    assert again.result.attempts == 2 and again.result.earlier_timings == state["timings"]
    run_steps(again, default_steps(again.qcfg))
    assert "calibrate" not in again.result.timings and list(again.result.recon_units) == ["0", "2", "4"]
    total = again.result.total_timings()
    assert total["calibrate"] == state["timings"]["calibrate"]
    assert total["reconstruct"] == state["timings"]["reconstruct"] + again.result.timings["reconstruct"]
    assert torch.load(first.work_dir / STATE_FILE, weights_only=True)["attempts"] == 2
    for (name, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name  # bit-identical to the uninterrupted run

    other = make_session(QDROP, work_dir=first.work_dir, run_hash="another run")
    assert resume(other) is None and other.resumed is None


def test_bad_exclusions_stop_before_any_work(make_session: MakeSession) -> None:
    session = make_session({**QDROP, "recon": {"iters": 3, "exclude": ["no_such_layer"]}})
    with pytest.raises(Exception, match="no_such_layer"):
        check_steps(session, default_steps(session.qcfg))
    assert not session.work_dir.exists()
