"""The ``rdoq`` section: defaults, round trip, and errors that name the key."""
from __future__ import annotations

import pytest

from rdoq_plugins.config import ConfigError, Estimator, QuantConfig, RDOQConfig, Target

BITS = [2, 4, 6, 8]


def _cfg(**kw: object) -> RDOQConfig:
    return RDOQConfig.from_dict({"weight_bits": BITS, "act_bits": BITS, "weight_group": 4, "act_group": 4,
                                 "projections": 8, "kappa": 0.0, **kw})


def test_defaults_and_round_trip() -> None:
    cfg = QuantConfig.from_dict({"rdoq": {"target_rates": [2, 3, 4], "apply_rate": 3, "solver": "lagrangian",
                                          "estimator": "measured", "target": "joint"}})
    assert cfg.rdoq is not None
    assert cfg.rdoq.estimator is Estimator.MEASURED and cfg.rdoq.target is Target.JOINT
    assert cfg.rdoq.target_rates == (2.0, 3.0, 4.0) and cfg.rdoq.apply_rate == 3.0
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    assert QuantConfig.from_dict({}).rdoq is None


@pytest.mark.parametrize(
    ("section", "key", "allowed"),
    [
        ({"solver": "knapsack"}, "rdoq.solver", "dp, greedy, lagrangian"),
        ({"estimator": "hessian"}, "rdoq.estimator", "measured, second_order"),
        ({"target": "weights"}, "rdoq.target", "act, both, joint, weight"),
        ({"target_rates": [4], "apply_rate": 3}, "rdoq.apply_rate", "4.0"),
        ({"target_rates": []}, "rdoq.target_rates", "non-empty list"),
        ({"weight_bits": [0, 2, 2]}, "rdoq.weight_bits", None),
        ({"min_bits": 5, "target_rates": [3]}, "rdoq.target_rates", "rates in [5, 10]"),
        ({"weight_group": 0}, "rdoq.weight_group", ">= 1"),
        ({"nchannelbatch": 8}, "rdoq.nchannelbatch", "weight_group"),
    ],
)
def test_errors_name_the_key(section: dict, key: str, allowed: str | None) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        RDOQConfig.from_dict(section)
    assert err.value.key == key
    if allowed:
        assert allowed in str(err.value)


def test_both_needs_act_rate_and_only_there() -> None:
    with pytest.raises(Exception, match="rdoq.act_rate: is required with target 'both'"):
        RDOQConfig.from_dict({"target": "both"})
    with pytest.raises(Exception, match="rdoq.act_rate: is required"):
        RDOQConfig.from_dict({"target": "weight", "act_rate": 4})
    with pytest.raises(Exception, match=r"rdoq.act_rate: 9.0 is outside.*rates in \[2, 8\]"):
        _cfg(target="both", act_rate=9, target_rates=[4])
    cfg = _cfg(target="both", act_rate=4, target_rates=[3])
    assert RDOQConfig.from_dict(cfg.to_dict()) == cfg
    assert "act_rate" not in _cfg(target="weight", target_rates=[3]).to_dict()  # absent unless set: hashes do not depend on it
