"""Caching a unit's quantized and FP calls, and unit-by-unit reconstruction."""
from __future__ import annotations

import copy

import torch

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import ChunkCache, cache_unit, reconstruct_units
from tests.core.recon.conftest import Pyramid, small_cnn


def test_cache_unit_pairs_quantized_and_fp_calls_of_a_shared_unit() -> None:
    fp = Pyramid().eval()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({}))
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    calibrate(model, batches, lambda m, b: m(b))
    with ChunkCache() as cache:
        cache_unit(model, fp, "head", batches, lambda m, b: m(b), cache)
        assert cache.num_chunks == 6 and len(cache) == 12
        q_in, f_in, f_out = cache.chunk(1)
        assert torch.equal(q_in, f_in)  # nothing quantized before the head
        assert torch.allclose(f_out, fp.head(batches[0][:, :, ::2, ::2]))


def test_unit_by_unit_reconstruction_lowers_the_model_error() -> None:
    fp = small_cnn()
    x = torch.randn(64, 4, 6, 6)
    batches = list(x.split(16))
    model = copy.deepcopy(fp)
    # The raw input stays FP: its rounding error is one reconstruction cannot undo.
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 2}, "overrides": {"0.0": {"a_qconfig": None}}}))
    calibrate(model, batches, lambda m, b: m(b))
    with torch.no_grad():
        before = (model(x) - fp(x)).pow(2).mean().item()
    stats = reconstruct_units(model, fp, ["0", "1", "2"], batches, lambda m, b: m(b),
                              QDropReconstructor(ReconConfig(iters=300, batch_size=8)))
    with torch.no_grad():
        after = (model(x) - fp(x)).pow(2).mean().item()
    assert list(stats) == ["0", "1", "2"] and all(s.iters == 300 for s in stats.values())
    assert after < 0.9 * before  # random weights and data: AdaRound gains ~20-30% here
