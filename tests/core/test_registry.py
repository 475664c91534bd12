"""Registries fail early with the registry's name and close matches."""
from __future__ import annotations

import pytest

from rdoq_plugins import OBSERVERS, QUANTIZERS, Registry
from rdoq_plugins.registry import RegistryError


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(RegistryError) as err:
        QUANTIZERS.get("LSQFakeQuantise")
    msg = str(err.value)
    assert "quantizer registry" in msg and "'LSQFakeQuantize'" in msg


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register()
    class A: ...

    with pytest.raises(RegistryError, match="already registered"):
        reg.register("A")(type("B", (), {}))
    assert "A" in reg and len(reg) == 1


def test_core_entries_are_registered() -> None:
    assert {"FixedFakeQuantize", "LSQFakeQuantize", "LSQPlusFakeQuantize", "AdaRoundFakeQuantize"} <= set(QUANTIZERS)
    assert {"MinMaxObserver", "AvgMinMaxObserver", "MSEObserver", "MSEFastObserver",
            "AvgMSEObserver", "AvgMSEFastObserver"} <= set(OBSERVERS)
