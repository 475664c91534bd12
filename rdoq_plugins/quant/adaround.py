"""AdaRound: learned rounding of weights (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020).

    w_tilde = s * (clamp(floor(w / s) + h(α) + z, q_min, q_max) - z)
    h(α)    = clamp(sigmoid(α) * (ζ - γ) + γ, 0, 1),   ζ = 1.1, γ = -0.1

α starts where ``h(α)`` equals the fractional part of ``w / s`` (so the soft weight equals the FP
weight inside the clipping range), is trained against the reconstruction loss plus the
regularizer ``Σ 1 - |2h(α) - 1|^β``, and is finally hardened to ``h = [α >= 0]``.
"""
from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn

from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.uniform import fake_quantize, per_channel
from rdoq_plugins.registry import QUANTIZERS

ZETA = 1.1
GAMMA = -0.1


class RoundMode(str, Enum):
    """How weights are rounded during reconstruction (the config's ``recon.round_mode``)."""

    NEAREST = "nearest"
    LEARNED_HARD_SIGMOID = "learned_hard_sigmoid"


class RoundingState(int, Enum):
    """Stored in the ``rounding_state`` buffer."""

    NEAREST = 0
    SOFT = 1
    HARD = 2


def rectified_sigmoid(alpha: Tensor) -> Tensor:
    """``h(α) = clamp(sigmoid(α)(ζ - γ) + γ, 0, 1)``."""
    return torch.clamp(torch.sigmoid(alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def inverse_rectified_sigmoid(h: Tensor) -> Tensor:
    """α such that ``h(α) = h`` for ``h`` in ``[0, 1)``."""
    p = ((h - GAMMA) / (ZETA - GAMMA)).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


@QUANTIZERS.register("AdaRoundFakeQuantize")
class AdaRoundFakeQuantize(FakeQuantize):
    """Weight fake quantizer with learnable rounding; rounds to nearest until :meth:`init_rounding`."""

    weight_only = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.register_buffer("rounding_state", torch.tensor(int(RoundingState.NEAREST), dtype=torch.uint8))
        self.alpha = nn.Parameter(torch.zeros(0))

    @property
    def state(self) -> RoundingState:
        return RoundingState(int(self.rounding_state))

    def _floor(self, w: Tensor) -> Tensor:
        return torch.floor(w / per_channel(self.scale.detach(), self.granularity, w))

    @torch.no_grad()
    def init_rounding(self, weight: Tensor) -> None:
        """Initialises α from the fractional part of ``weight / s`` and switches to soft rounding."""
        s = per_channel(self.scale, self.granularity, weight)
        frac = weight / s - self._floor(weight)
        self.alpha = nn.Parameter(inverse_rectified_sigmoid(frac).detach().clone())
        self.rounding_state.fill_(int(RoundingState.SOFT))

    def soft_rounding(self) -> Tensor:
        """``h(α)`` in ``[0, 1]``."""
        return rectified_sigmoid(self.alpha)

    @torch.no_grad()
    def harden(self) -> None:
        """Ends learning: ``h = 1`` where ``α >= 0``, else 0."""
        if self.state is RoundingState.NEAREST:
            raise RuntimeError("harden() called before init_rounding()")
        self.rounding_state.fill_(int(RoundingState.HARD))
        self.alpha.requires_grad_(False)

    def rounding_loss(self, beta: float) -> Tensor:
        """The regularizer ``Σ 1 - |2h(α) - 1|^β`` that pushes ``h`` to 0 or 1."""
        return (1 - (2 * self.soft_rounding() - 1).abs().pow(beta)).sum()

    def quantize(self, x: Tensor) -> Tensor:
        state = self.state
        if state is RoundingState.NEAREST:
            return super().quantize(x)
        if self.alpha.shape != x.shape:
            raise RuntimeError(f"AdaRound α has shape {tuple(self.alpha.shape)}, weight {tuple(x.shape)}")
        h = self.soft_rounding() if state is RoundingState.SOFT else (self.alpha >= 0).to(x.dtype)
        rounded = self._floor(x) + h
        return fake_quantize(
            x, self.scale, self.zero_point, self.bits, self.symmetric, self.granularity, rounded=rounded
        )
