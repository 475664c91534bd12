"""QDrop's mix: the quantized value with probability p, the FP value otherwise."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.quant import qdrop_mix


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_keep_rate_statistics(p: float) -> None:
    n = 200_000
    x_fp, x_q = torch.zeros(n), torch.ones(n)
    kept = qdrop_mix(x_fp, x_q, p).mean().item()
    # Binomial standard deviation sqrt(p(1-p)/n) <= 0.0012: 5 sigma.
    assert kept == pytest.approx(p, abs=0.006)


def test_ends_of_the_range_and_a_seeded_generator() -> None:
    x_fp, x_q = torch.zeros(1000), torch.ones(1000)
    assert qdrop_mix(x_fp, x_q, 1.0) is x_q and qdrop_mix(x_fp, x_q, 0.0) is x_fp
    a = qdrop_mix(x_fp, x_q, 0.5, torch.Generator().manual_seed(7))
    b = qdrop_mix(x_fp, x_q, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
