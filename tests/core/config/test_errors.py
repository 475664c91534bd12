"""Config errors: the message format, key suggestions and the typed getters' checks."""
from __future__ import annotations

import pytest

from rdoq_plugins.config.errors import ConfigError, check_keys, get_bool, get_choice, get_float, get_int, join


def test_message_names_key_problem_value_and_allowed() -> None:
    err = ConfigError("recon.iters", "out of range", -1, "an integer >= 0")
    assert str(err) == "quant config: recon.iters: out of range; got -1; allowed: an integer >= 0"
    assert err.key == "recon.iters" and isinstance(err, ValueError)
    assert str(ConfigError("x", "missing")) == "quant config: x: missing"
    assert str(ConfigError("x", "bad", None)) == "quant config: x: bad; got None"
    assert join("", "a") == "a" and join("recon.early_stop", "window") == "recon.early_stop.window"


def test_unknown_keys_suggest_a_close_match() -> None:
    with pytest.raises(ConfigError) as err:
        check_keys({"bit": 4, "symetric": True}, ["bit", "symmetric", "observer"], "w_qconfig")
    assert err.value.key == "w_qconfig.symetric"
    assert "did you mean 'symmetric'" in str(err.value) and "allowed: bit, observer, symmetric" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_keys({"zzz": 1}, ["bit"], "")
    assert err.value.key == "zzz" and "did you mean" not in str(err.value)
    with pytest.raises(ConfigError, match="<root>: expected a mapping"):
        check_keys([1], ["bit"], "")  # type: ignore[arg-type]
    check_keys({"bit": 1}, ["bit"], "w_qconfig")


def test_getters_check_type_and_range() -> None:
    data = {"flag": True, "n": 3, "yes": "yes", "x": 0.5, "one": 1, "mode": "dp"}
    assert get_bool(data, "flag", False, "p") is True and get_bool(data, "absent", False, "p") is False
    with pytest.raises(ConfigError, match="p.yes: expected a boolean"):
        get_bool(data, "yes", False, "p")
    assert get_int(data, "n", None, "p", 1, 3) == 3
    with pytest.raises(ConfigError, match=r"p.n: out of range; got 3; allowed: an integer in \[0, 2\]"):
        get_int(data, "n", None, "p", 0, 2)
    with pytest.raises(ConfigError, match="expected an integer"):
        get_int(data, "flag", None, "p", 0)  # a boolean is not an integer
    assert get_float(data, "one", 0.0, "p", 0.0, 1.0) == 1.0 and isinstance(get_float(data, "n", 0.0, "p", 0.0), float)
    with pytest.raises(ConfigError, match=r"a number in \[0.0, 1.0\)"):
        get_float(data, "one", 0.0, "p", 0.0, 1.0, hi_open=True)
    with pytest.raises(ConfigError, match=r"a number in \(0.5, inf\]"):
        get_float(data, "x", 0.0, "p", 0.5, lo_open=True)
    with pytest.raises(ConfigError, match="expected a number"):
        get_float(data, "flag", 0.0, "p", 0.0)
    assert get_choice(data, "mode", "greedy", "rdoq", ("dp", "greedy")) == "dp"
    with pytest.raises(ConfigError, match=r"rdoq.mode: unknown value \(did you mean 'greedy'\?\); got 'greedi'"):
        get_choice({"mode": "greedi"}, "mode", "dp", "rdoq", ("dp", "greedy"))
