"""QDrop keeps the quantized value with probability p while reconstructing, never at test time."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import PerTensor
from rdoq_plugins.quant import FakeQuantize, qdrop_mix


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_keep_rate_statistics(p: float) -> None:
    n = 200_000
    x_fp, x_q = torch.zeros(n), torch.ones(n)
    kept = qdrop_mix(x_fp, x_q, p).mean().item()
    # Binomial standard deviation sqrt(p(1-p)/n) <= 0.0012: 5 sigma.
    assert kept == pytest.approx(p, abs=0.006)


def test_quantizer_drops_only_in_training_mode() -> None:
    q = FakeQuantize(bit=2, granularity=PerTensor())
    q.scale.fill_(1.0)
    q.enable_fake_quant(True)
    q.set_keep_prob(0.5)
    x = torch.rand(100_000) * 0.49 + 0.5  # every value rounds to 1
    q.train()
    out = q(x)
    frac_quantized = (out == 1.0).float().mean().item()
    assert frac_quantized == pytest.approx(0.5, abs=0.01)
    q.eval()
    assert torch.all(q(x) == 1.0)


def test_keep_prob_is_validated() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FakeQuantize().set_keep_prob(1.5)
