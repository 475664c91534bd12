"""Curve settings: validation, and the groups and candidates of each tensor kind."""
from __future__ import annotations

import pytest

from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.rd import CandidateGrid, CurveSpec, TensorKind
from rdoq_plugins.rd.curve import ACT_AXIS, WEIGHT_AXIS


def test_each_kind_gets_its_own_groups_and_grid() -> None:
    w, a = CandidateGrid((2, 4), (1.0,)), CandidateGrid((4, 8), (1.0, 0.5))
    spec = CurveSpec(kinds=(TensorKind.WEIGHT, TensorKind.ACT), weight_group=2, act_group=16, weight_grid=w,
                     act_grid=a)
    assert spec.group(TensorKind.WEIGHT) == PerGroup(WEIGHT_AXIS, 2)
    assert spec.group(TensorKind.ACT) == PerGroup(ACT_AXIS, 16)
    assert spec.grid(TensorKind.WEIGHT) is w and spec.grid(TensorKind.ACT) is a
    assert WEIGHT_AXIS == 0 and ACT_AXIS == 1  # output channels of a weight, channels of an [N, C, ...] input


def test_defaults_are_weights_only_with_separate_grids() -> None:
    spec = CurveSpec()
    assert spec.kinds == (TensorKind.WEIGHT,)
    assert spec.weight_grid == CandidateGrid() and spec.act_grid.bits == tuple(range(9))
    assert CurveSpec() == spec and hash(CurveSpec()) == hash(spec)
    assert CurveSpec(act_group=4) != spec and CurveSpec(seed=1) != spec


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"kinds": ()}, "kinds is empty"), ({"weight_group": 0}, ">= 1"), ({"act_group": 0}, ">= 1"),
     ({"projections": 0}, ">= 1")],
)
def test_bad_settings_are_rejected(kw: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        CurveSpec(**kw)
