"""Fake quantizers: uniform grids, LSQ, AdaRound and QDrop's dropping."""
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundingState, RoundMode
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.lsq import LSQFakeQuantize, LSQPlusFakeQuantize
from rdoq_plugins.quant.qdrop import qdrop_mix
from rdoq_plugins.quant.uniform import MAX_BITS, fake_quantize, quant_bounds, round_ste

__all__ = [
    "MAX_BITS",
    "AdaRoundFakeQuantize",
    "FakeQuantize",
    "LSQFakeQuantize",
    "LSQPlusFakeQuantize",
    "RoundMode",
    "RoundingState",
    "fake_quantize",
    "qdrop_mix",
    "quant_bounds",
    "round_ste",
]
