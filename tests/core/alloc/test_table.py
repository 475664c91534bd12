"""RD tables validate their input; the registry and ``allocate`` find the solvers by name."""
from __future__ import annotations

import numpy as np
import pytest

from rdoq_plugins.alloc import RDTable, allocate
from rdoq_plugins.registry import ALLOCATORS, RegistryError


def test_solvers_are_registered_and_found_by_name() -> None:
    assert {"dp", "lagrangian", "greedy"} <= set(ALLOCATORS)
    table = RDTable(np.array([[0.0, 1.0, 2.0]] * 2), np.array([[4.0, 1.0, 0.0], [3.0, 2.0, 1.5]]))
    for name in ("dp", "lagrangian", "greedy"):
        a = allocate(table, 2.0, name)
        assert a.solver == name and a.rate <= 2.0 and a.choice.dtype == np.int64
    with pytest.raises(RegistryError, match="bit allocator registry.*'lagrangian'"):
        allocate(table, 2.0, "lagrange")


@pytest.mark.parametrize(
    ("rate", "dist", "allowed", "match"),
    [
        (np.zeros(3), np.zeros(3), None, "2-D"),
        (np.zeros((2, 3)), np.zeros((3, 2)), None, "must match"),
        (np.zeros((0, 3)), np.zeros((0, 3)), None, "at least one group"),
        (np.array([[0.0, -1.0]]), np.zeros((1, 2)), None, "rate must be >= 0; group 0 choice 1"),
        (np.zeros((1, 2)), np.array([[np.nan, 1.0]]), None, "distortion must be finite"),
        (np.zeros((2, 2)), np.zeros((2, 2)), np.array([[True, False], [False, False]]), r"group\(s\) \[1\]"),
        (np.zeros((1, 2)), np.zeros((1, 2)), np.array([[1, 0]]), "bool"),
    ],
)
def test_invalid_tables_are_rejected(rate: np.ndarray, dist: np.ndarray, allowed: np.ndarray | None,
                                     match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RDTable(rate, dist, allowed)


def test_disallowed_entries_may_hold_anything_and_ranges_skip_them() -> None:
    rate = np.array([[1.0, np.inf, 3.0], [2.0, 1.0, np.nan]])
    dist = np.array([[5.0, np.nan, 1.0], [2.0, 4.0, -1.0]])
    allowed = np.array([[True, False, True], [True, True, False]])
    table = RDTable(rate, dist, allowed)
    assert table.min_rate() == 2.0 and table.max_rate() == 5.0 and table.saturation_rate() == 5.0
    assert table.min_rate_choice().tolist() == [0, 1] and table.min_distortion_choice().tolist() == [2, 0]
    with pytest.raises(ValueError, match="choice 1 of group 0 is not allowed"):
        table.evaluate(np.array([1, 0]))
    # (rate 1 + 2, distortion 5 + 2) beats (1 + 1, 5 + 4); the Lagrangian's price ties, stops at the latter.
    for name in ("dp", "greedy"):
        assert allocate(table, 3.0, name).choice.tolist() == [0, 0]
    assert allocate(table, 3.0, "lagrangian").choice.tolist() == [0, 1]


def test_budget_must_be_a_number() -> None:
    table = RDTable(np.ones((1, 1)), np.ones((1, 1)))
    for bad in ("3", None, True):
        with pytest.raises(TypeError, match="budget must be a number"):
            table.check_budget(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget is nan"):
        table.check_budget(float("nan"))
