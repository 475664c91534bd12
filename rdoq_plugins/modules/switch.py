"""One switch for quantization on a layer, a block or a whole model (as BRECQ's
``set_quant_state``, Li et al., ICLR 2021)."""
from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from rdoq_plugins.quant.fake_quantize import FakeQuantize


def quantizers(module: nn.Module, weight: bool | None = None) -> Iterator[FakeQuantize]:
    """All fake quantizers under ``module``; only weight (True) or activation (False) ones if set."""
    for m in module.modules():
        if isinstance(m, FakeQuantize) and (weight is None or m.is_weight == weight):
            yield m


def set_quant_state(module: nn.Module, weight: bool | None = None, act: bool | None = None) -> None:
    """Turns weight and / or activation fake quantization on or off; None leaves it as it is."""
    for q in quantizers(module):
        on = weight if q.is_weight else act
        if on is not None:
            q.enable_fake_quant(on)


def set_observer_state(module: nn.Module, weight: bool | None = None, act: bool | None = None) -> None:
    """Turns weight and / or activation observers on or off; None leaves them as they are."""
    for q in quantizers(module):
        on = weight if q.is_weight else act
        if on is not None:
            q.enable_observer(on)
