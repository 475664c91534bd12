"""The RDOQ settings the tools of one work dir share: the flags an earlier tool was given carry over,
a later tool's own flags win, a difference from the config is one warning line, and the target
rates are checked against the curves' bits before any work."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.errors import InputError
from rdoq_plugins.workflow import Step, check_steps
from rdoq_plugins.workflow.curves import curve_store
from rdoq_plugins.workflow.tool_settings import (
    DP_ALLOC,
    GEN_RD_CURVES,
    TEST,
    other_curves_note,
    read_stored,
    record_alloc_flags,
    record_curve_flags,
    settings_path,
    tool_rdoq,
)
from tests.core.workflow.conftest import MakeSession

RDOQ = {"target_rates": [2.5], "weight_group": 4, "weight_bits": [2, 3, 4, 6], "weight_ratios": [1.0],
        "projections": 2}
CONFIG = {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 8, "recon": None, "rdoq": RDOQ}


def _config(**rdoq: object) -> RDOQConfig:
    return RDOQConfig.from_dict({**RDOQ, **rdoq})


def test_stored_flags_carry_over_and_own_flags_win(make_session: MakeSession, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    session = make_session(CONFIG)
    record_curve_flags(session, {"calib_images": 4, "weight_group": 2, "target_rates": [3.0]})
    record_alloc_flags(session.work_dir, {"target_rates": [2.0, 3.0], "solver": "greedy", "apply_rate": 2.0})
    stored = read_stored(session.work_dir, "curves")
    assert stored is not None and stored["flags"] == {"calib_images": 4, "weight_group": 2}  # curve keys only
    assert stored["folder"] == curve_store(session).dir.name and stored["rdoq"]["projections"] == 2
    with caplog.at_level(logging.WARNING, "rdoq_plugins"):
        cfg = tool_rdoq(_config(), {}, session.work_dir, TEST)
    assert cfg is not None and cfg.calib_images == 4 and cfg.weight_group == 2 and cfg.solver == "greedy"
    assert cfg.target_rates == (2.0, 3.0) and cfg.apply_rate == 2.0  # the config's 2.5 is not among them
    lines = caplog.messages
    assert any(m.startswith("rdoq.weight_group: 2 from gen_rd_curves.py's --nchannelbatch") and
               m.endswith("not the config's 4") for m in lines), lines
    assert any(m.startswith("rdoq.apply_rate: 2.0") for m in lines), lines
    assert any(m.startswith("rdoq.solver: 'greedy' from dp_alloc.py's --solver") for m in lines), lines
    assert len(lines) == 5  # calib_images, weight_group, target_rates, solver, apply_rate: one line each
    # The tool's own flags win; the curve tool reads nothing; dp_alloc reads the curve flags only.
    own = tool_rdoq(_config(), {"calib_images": 8}, session.work_dir, TEST)
    assert own is not None and own.calib_images == 8 and own.weight_group == 2
    assert tool_rdoq(_config(), {}, session.work_dir, GEN_RD_CURVES) == _config()
    alloc = tool_rdoq(_config(), {}, session.work_dir, DP_ALLOC)
    assert alloc is not None and alloc.calib_images == 4 and alloc.solver == "dp"


def test_test_tool_without_an_rdoq_section(tmp_path: Path) -> None:
    assert tool_rdoq(None, {}, tmp_path, TEST) is None
    with pytest.raises(InputError, match=r"test.py: the RDOQ flags \(calib_images\) need an rdoq section"):
        tool_rdoq(None, {"calib_images": 4}, tmp_path, TEST)
    assert tool_rdoq(None, {}, tmp_path, GEN_RD_CURVES) == RDOQConfig()


def test_rates_outside_the_stored_bits_name_key_value_range_and_source(tmp_path: Path) -> None:
    path = settings_path(tmp_path, "curves")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"tool": "gen_rd_curves.py", "flags": {"weight_bits": [0, 1, 2]}}))
    with pytest.raises(InputError) as err:
        tool_rdoq(_config(weight_bits=[0, 1, 2, 3, 4], target_rates=[2, 4]), {}, tmp_path, TEST)
    text = str(err.value)
    assert "rdoq.target_rates: 4.0 is outside the curves' bits" in text and "rates in [0, 2]" in text
    assert "weight_bits from gen_rd_curves.py's --maxrates" in text and "\n" not in text


def test_unreadable_settings_are_an_input_error(tmp_path: Path) -> None:
    path = settings_path(tmp_path, "alloc")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(InputError, match="rd_alloc/settings.json: unreadable RDOQ tool settings"):
        tool_rdoq(_config(), {}, tmp_path, TEST)


def test_other_curves_are_named_before_new_ones_are_computed(make_session: MakeSession) -> None:
    session = make_session(CONFIG)
    assert other_curves_note(session) is None
    record_curve_flags(session, {})
    assert other_curves_note(session) is None  # the same curve set
    session.qcfg = replace(session.qcfg, rdoq=_config(projections=3))
    note = other_curves_note(session)
    assert note is not None and "rdoq.projections: 2 there, 3 here" in note and "computing a new curve set" in note
    session.qcfg = replace(session.qcfg, rdoq=_config())
    session.data_hash = "another checkpoint"
    note = other_curves_note(session)
    assert note is not None and "same curve settings, another model" in note


def test_check_steps_refuses_rates_outside_the_curves_bits(make_session: MakeSession) -> None:
    session = make_session(CONFIG)
    session.qcfg = replace(session.qcfg, rdoq=replace(_config(), target_rates=(7.0,), apply_rate=7.0))  # unchecked
    with pytest.raises(ConfigError, match=r"rdoq.target_rates: 7.0 is outside .*rates in \[2, 6\]"):
        check_steps(session, [Step.CALIBRATE, Step.CURVES, Step.ALLOCATE])
    assert not session.work_dir.exists()
