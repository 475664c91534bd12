"""The RDOQ flags of the tools over the config's ``rdoq`` section (``--target both --act_rate``)."""
from __future__ import annotations

import argparse

import pytest

from rdoq_plugins.cli_flags import add_rdoq_args, rdoq_from_flags
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.config.rdoq import Target


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_rdoq_args(parser)
    return parser.parse_args(list(argv))


def test_target_both_takes_an_act_rate() -> None:
    cfg = rdoq_from_flags(None, _flags("--target", "both", "--act_rate", "5", "--target_rates", "3"))
    assert cfg.target is Target.BOTH and cfg.act_rate == 5.0 and cfg.target_rates == (3.0,)


def test_another_target_drops_the_configs_act_rate() -> None:
    base = RDOQConfig.from_dict({"target": "both", "act_rate": 4})
    assert rdoq_from_flags(base, _flags("--target", "weight")).act_rate is None
    assert rdoq_from_flags(base, _flags("--target_rates", "3")).act_rate == 4.0


def test_both_without_act_rate_exits_naming_the_key() -> None:
    with pytest.raises(SystemExit, match="rdoq.act_rate: is required with target 'both'"):
        rdoq_from_flags(None, _flags("--target", "both"))
