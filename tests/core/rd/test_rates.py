"""Allocations per target rate: with ``target: both`` weights and activations each within their own
budget, with ``joint`` one shared budget."""
from __future__ import annotations

import numpy as np
import pytest

from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.rd import TensorKind, curve_table, second_order_curves
from rdoq_plugins.rd.layers import curve_spec
from rdoq_plugins.rd.rates import allocate_rates
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]

BITS = [2, 4, 6, 8]


def _cfg(**kw: object) -> RDOQConfig:
    return RDOQConfig.from_dict({"weight_bits": BITS, "act_bits": BITS, "weight_group": 4, "act_group": 4,
                                 "projections": 8, "kappa": 0.0, **kw})


@pytest.mark.parametrize("solver", ["dp", "greedy"])
def test_both_allocates_each_kind_within_its_own_budget(quantized, solver: str) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    cfg = _cfg(target="both", target_rates=[3, 5], act_rate=6)
    curves = second_order_curves(model, layers, batches, outputs, curve_spec(cfg))
    table = curve_table(list(curves.values()))
    for alloc in allocate_rates(table, cfg, solver):
        assert alloc.kind_bits["weight"] <= alloc.target_rate + 1e-9
        assert alloc.kind_bits["act"] <= 6.0 + 1e-9
        assert alloc.avg_bits == pytest.approx(alloc.kind_bits["weight"])
        # Two budgets are two independent knapsacks: each kind gets what it gets when allocated alone.
        for kind, rate in ((TensorKind.WEIGHT, alloc.target_rate), (TensorKind.ACT, 6.0)):
            alone = curve_table([c for c in curves.values() if c.kind is kind])
            target = "weight" if kind is TensorKind.WEIGHT else "act"
            single = allocate_rates(alone, _cfg(target=target, target_rates=[rate]), solver)[0]
            rows = np.concatenate([np.full(c.num_groups, c.kind is kind) for c in table.curves])
            assert np.array_equal(alloc.choice[rows], single.choice)
    # One shared budget (joint) trades the kinds against each other instead.
    joint = allocate_rates(table, _cfg(target="joint", target_rates=[4]), solver)[0]
    assert joint.kind_bits["joint"] <= 4.0 + 1e-9
