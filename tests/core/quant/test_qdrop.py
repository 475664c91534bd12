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


class _TwoReaders(torch.nn.Module):
    """A unit whose input is read by two quantized layers (a ResNet block's conv1 and downsample)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = torch.nn.Conv2d(4, 4, 1)
        self.conv_b = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_a(x) + self.conv_b(x)


def _seen(mix: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """What each input quantizer passed on during one reconstruction step, and the four values an
    element can take: Q(x_q), Q(x_fp), x_q, x_fp."""
    from rdoq_plugins import QDropReconstructor, TensorCache, calibrate, load_quant_config, quantize_model
    from rdoq_plugins.config import ReconConfig

    torch.manual_seed(0)
    unit = _TwoReaders().eval()
    quantize_model(unit, load_quant_config({"a_qconfig": {"bit": 4, "observer": "MinMaxObserver"}}))
    calibrate(unit, [torch.rand(2, 4, 8, 8)], lambda m, b: m(b))
    q_in, fp_in = torch.full((1, 4, 32, 32), 0.33), torch.full((1, 4, 32, 32), 0.71)
    quantizer = unit.conv_a.input_quantizer
    with torch.no_grad():
        values = {"Q(x_q)": float(quantizer(q_in)[0, 0, 0, 0]), "Q(x_fp)": float(quantizer(fp_in)[0, 0, 0, 0]),
                  "x_q": 0.33, "x_fp": 0.71}
    assert len({round(v, 6) for v in values.values()}) == 4
    seen: dict[str, torch.Tensor] = {}
    hooks = [getattr(unit, name).input_quantizer.register_forward_hook(
        lambda _m, _a, out, name=name: seen.setdefault(name, out.detach().clone())) for name in ("conv_a", "conv_b")]
    cache = TensorCache(q_in, fp_in, torch.zeros(1, 4, 32, 32))
    QDropReconstructor(ReconConfig(iters=1, batch_size=1, drop_prob=0.5, mix=mix))(unit, cache)
    for h in hooks:
        h.remove()
    return seen, values


def _fractions(out: torch.Tensor, values: dict[str, float]) -> dict[str, float]:
    return {k: float(((out - v).abs() < 1e-5).float().mean()) for k, v in values.items()}


def test_element_mix_is_the_papers_rule_with_one_mask_per_element() -> None:
    seen, values = _seen("element")
    frac = _fractions(seen["conv_a"], values)
    assert frac["Q(x_q)"] == pytest.approx(0.5, abs=0.04) and frac["x_fp"] == pytest.approx(0.5, abs=0.04)
    assert frac["Q(x_fp)"] == 0 and frac["x_q"] == 0
    assert torch.equal(seen["conv_a"], seen["conv_b"])  # both readers see the same choice


def test_twice_mix_gives_four_kinds_of_elements_with_masks_of_their_own() -> None:
    seen, values = _seen("twice")
    frac = _fractions(seen["conv_a"], values)
    assert all(f == pytest.approx(0.25, abs=0.04) for f in frac.values()), frac
    assert not torch.equal(seen["conv_a"], seen["conv_b"])
