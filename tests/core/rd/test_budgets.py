"""Which tensors an allocation covers and with which budget: ``target: both`` (weights and
activations, each at its own average) and per-level inputs, which keep their uniform bits."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import outputs  # type: ignore[import-not-found]

from rdoq_plugins import QuantConfig
from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.modules import LevelQuantizer
from rdoq_plugins.modules.level_quantizer import LevelCursor, split_levels
from rdoq_plugins.rd import TensorKind, curve_table, second_order_curves
from rdoq_plugins.rd.run import allocate_rates, curve_keys, curve_spec, rd_layers

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


def test_both_needs_act_rate_and_only_there() -> None:
    with pytest.raises(Exception, match="rdoq.act_rate: is required with target 'both'"):
        RDOQConfig.from_dict({"target": "both"})
    with pytest.raises(Exception, match="rdoq.act_rate: is required"):
        RDOQConfig.from_dict({"target": "weight", "act_rate": 4})
    with pytest.raises(Exception, match=r"rdoq.act_rate: 9.0 is outside.*rates in \[2, 8\]"):
        _cfg(target="both", act_rate=9, target_rates=[4])
    cfg = _cfg(target="both", act_rate=4, target_rates=[3])
    assert RDOQConfig.from_dict(cfg.to_dict()) == cfg
    assert "act_rate" not in _cfg(target="weight", target_rates=[3]).to_dict()  # older hashes unchanged


def test_per_level_inputs_keep_their_bits(quantized) -> None:  # type: ignore[no-untyped-def]
    model, layers, _ = quantized
    split_levels(model.shared, LevelCursor(2))
    assert isinstance(layers["shared"].input_quantizer, LevelQuantizer)

    def covered(target: str) -> tuple[list[str], list[tuple[str, TensorKind]]]:
        extra = {"act_rate": 4} if target == "both" else {}
        qcfg = QuantConfig.from_dict({"rdoq": {"target": target, **extra}})
        assert qcfg.rdoq is not None
        chosen = rd_layers(layers, qcfg)
        return list(chosen), curve_keys(chosen, qcfg.rdoq.target)

    names, keys = covered("both")
    assert "shared" in names and ("shared", TensorKind.WEIGHT) in keys and ("shared", TensorKind.ACT) not in keys
    assert ("conv2", TensorKind.ACT) in keys
    names, keys = covered("act")
    assert "shared" not in names and all(k is TensorKind.ACT for _, k in keys)
    names, keys = covered("weight")
    assert ("shared", TensorKind.WEIGHT) in keys
