"""The fake-quantizer module: an observer plus a uniform grid with per-unit bits.

Follows ``torch.ao.quantization.FakeQuantize``: the observer records statistics and the
fake-quantizer owns it, with ``observer_enabled`` / ``fake_quant_enabled`` switches. Every piece of
state (scale, zero point, bits per unit, switches, QDrop keep-probability and the unit layout) is a
buffer or parameter, so ``state_dict`` round-trips exactly.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.granularity import Granularity, PerTensor, encode
from rdoq_plugins.observers.base import Observer
from rdoq_plugins.quant.qdrop import qdrop_mix
from rdoq_plugins.quant.state import ResizeOnLoad
from rdoq_plugins.quant.uniform import MAX_BITS, fake_quantize, per_unit_bits
from rdoq_plugins.registry import OBSERVERS, QUANTIZERS


@QUANTIZERS.register("FixedFakeQuantize")
class FakeQuantize(ResizeOnLoad, nn.Module):
    """Uniform fake quantizer with fixed (observed) step sizes and straight-through rounding.

    Args:
        observer: name of a registered observer (``MinMaxObserver``, ``MSEObserver``, ...).
        bit: the bit-width of every unit, ``0..16`` (per-unit bits are set with :meth:`set_bits`).
        symmetric: signed grid with zero point 0, else ``[0, 2^b - 1]`` with a zero point.
        granularity: ``PerTensor()``, ``PerChannel(axis)`` or ``PerGroup(axis, size)``.
        num_channels: channels along the granularity's axis (ignored for ``PerTensor``).
        is_weight: whether this quantizes a weight (the model-wide switch tells them apart).
        observer_kwargs: extra arguments for the observer (e.g. ``p`` for the Lp observers).
    """

    learn_scale: bool = False
    learn_zero_point: bool = False
    weight_only: bool = False

    def __init__(
        self,
        observer: str = "MinMaxObserver",
        bit: int = 8,
        symmetric: bool = False,
        granularity: Granularity = PerTensor(),
        num_channels: int = 1,
        is_weight: bool = False,
        observer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= bit <= MAX_BITS:
            raise ValueError(f"bit must be in 0..{MAX_BITS}, got {bit}")
        if self.weight_only and not is_weight:
            raise ValueError(f"{type(self).__name__} quantizes weights only")
        self.observer_name = observer
        self.observer_kwargs = dict(observer_kwargs or {})
        self.symmetric = symmetric
        self.is_weight = is_weight
        self.register_buffer("observer_enabled", torch.tensor(0, dtype=torch.uint8))
        self.register_buffer("fake_quant_enabled", torch.tensor(0, dtype=torch.uint8))
        self.register_buffer("keep_prob", torch.tensor(1.0))
        # (tensor, mask): while a unit is reconstructed with recon.mix='element', the input it
        # received and the mask that mixed it; this quantizer reuses the mask when it reads it.
        self.shared_mask: tuple[Tensor, Tensor] | None = None
        self.set_granularity(granularity, num_channels, bit)

    # -- layout -------------------------------------------------------------------------------
    def set_granularity(self, granularity: Granularity, num_channels: int, bit: int | Tensor) -> None:
        """Rebuilds the per-unit state for a new unit layout (e.g. RDOQ channel groups).

        The observer is rebuilt empty, so the quantizer must be calibrated again.
        """
        channels = 1 if isinstance(granularity, PerTensor) else num_channels
        units = granularity.num_units(channels)
        self.granularity = granularity
        self.num_channels = channels
        self.register_buffer("granularity_code", encode(granularity))
        bits = per_unit_bits(bit, units)
        self.register_buffer("bits", bits)
        scale, zero_point = torch.ones(units), torch.zeros(units)
        self._set_state("scale", scale, self.learn_scale)
        self._set_state("zero_point", zero_point, self.learn_zero_point)
        self.observer: Observer = OBSERVERS.build(
            self.observer_name,
            granularity=granularity,
            num_channels=channels,
            symmetric=self.symmetric,
            **self.observer_kwargs,
        )

    def _set_state(self, name: str, value: Tensor, learnable: bool) -> None:
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        if learnable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def set_bits(self, bits: int | Tensor) -> None:
        """Sets the bit-width of every unit (an int) or of each unit (a ``[U]`` tensor)."""
        self.bits.copy_(per_unit_bits(bits, self.bits.numel()).to(self.bits.device))

    # -- switches -----------------------------------------------------------------------------
    def enable_observer(self, on: bool = True) -> None:
        self.observer_enabled.fill_(int(on))

    def enable_fake_quant(self, on: bool = True) -> None:
        self.fake_quant_enabled.fill_(int(on))

    def set_keep_prob(self, p: float) -> None:
        """QDrop: keep the quantized value with probability ``p`` (in training mode only)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"keep probability must be in [0, 1], got {p}")
        self.keep_prob.fill_(p)

    # -- computation --------------------------------------------------------------------------
    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        """Feeds ``x`` to the observer and refreshes scale / zero point from it."""
        self.observer(x, self.bits)
        scale, zero_point = self.observer.calculate_qparams(self.bits)
        self.scale.data.copy_(scale)
        self.zero_point.data.copy_(zero_point)

    def quantize(self, x: Tensor) -> Tensor:
        """The fake-quantized ``x`` (no observation, no dropping)."""
        return fake_quantize(x, self.scale, self.zero_point, self.bits, self.symmetric, self.granularity)

    def forward(self, x: Tensor) -> Tensor:
        if bool(self.observer_enabled):
            self.observe(x)
        if not bool(self.fake_quant_enabled):
            return x
        x_q = self.quantize(x)
        p = float(self.keep_prob)
        if self.training and p < 1.0:
            shared = self.shared_mask
            if shared is not None and x is shared[0]:  # the unit's input: the mask it was mixed with
                return torch.where(shared[1], x_q, x)
            x_q = qdrop_mix(x, x_q, p)
        return x_q

    def extra_repr(self) -> str:
        bits = self.bits.unique().tolist()
        return (
            f"bits={bits if len(bits) > 1 else bits[0]}, symmetric={self.symmetric}, "
            f"{self.granularity}, weight={self.is_weight}"
        )
