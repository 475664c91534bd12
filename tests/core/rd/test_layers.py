"""Which layers and curves an allocation covers: per-level inputs keep their uniform bits."""
from __future__ import annotations

from rdoq_plugins import QuantConfig
from rdoq_plugins.modules import LevelQuantizer
from rdoq_plugins.modules.level_quantizer import LevelCursor, split_levels
from rdoq_plugins.rd import TensorKind
from rdoq_plugins.rd.layers import curve_keys, rd_layers


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
