"""Capturing unit calls, the bounded chunk cache, and unit-by-unit reconstruction."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import ChunkCache, cache_unit, call_order, capture_calls, reconstruct_units


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    block = lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())  # noqa: E731
    return nn.Sequential(block(4), block(4), nn.Conv2d(4, 2, 1)).eval()


class Pyramid(nn.Module):
    """A head conv shared across two levels, like an FPN head."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 2, 3, padding=1)
        self.after = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.after(self.head(level)) for level in (x, x[:, :, ::2, ::2])]


def test_capture_stops_after_the_units_last_call() -> None:
    model = _model()
    calls: list[str] = []
    model[2].register_forward_pre_hook(lambda *_: calls.append("last"))
    x = torch.randn(3, 4, 5, 5)
    run = lambda m, b: m(b)  # noqa: E731
    [(inp, out)] = capture_calls(model, model[1], x, run, num_calls=1)
    assert torch.allclose(inp, model[0](x)) and out is not None and torch.allclose(out, model[1](model[0](x)))
    calls.clear()
    [(inp2, none)] = capture_calls(model, model[1], x, run, with_output=False, num_calls=1)
    assert none is None and torch.equal(inp2, inp) and calls == []


def test_capture_records_every_call_of_a_shared_unit() -> None:
    model = Pyramid()
    x = torch.randn(2, 3, 8, 8)
    calls = capture_calls(model, model.head, x, lambda m, b: m(b))
    assert [c[0].shape[-1] for c in calls] == [8, 4]
    with pytest.raises(RuntimeError, match="expected 3"):
        capture_calls(model, model.head, x, lambda m, b: m(b), num_calls=3)


def test_capture_of_an_unreached_unit_is_an_error() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match="never reached"):
        capture_calls(model, model[2], torch.randn(1, 4, 5, 5), lambda m, b: m[0](b))


def test_chunk_cache_spills_to_disk_within_its_budget(tmp_path: Path) -> None:
    chunk = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    per_chunk = 3 * chunk[0].numel() * 4
    with ChunkCache("cpu", max_bytes=per_chunk * 2, spill_dir=tmp_path) as cache:
        for i in range(5):
            cache.add(*(t + i for t in chunk))
        assert cache.bytes_in_memory == 2 * per_chunk and cache.bytes_on_disk == 3 * per_chunk
        assert len(list(tmp_path.iterdir())) == 1
        for i in range(5):
            assert torch.equal(cache.chunk(i)[2], chunk[2] + i)
        q, f, o = cache.sample(1, torch.Generator().manual_seed(0))
        assert q.shape == (1, 4, 8, 8)
    assert list(tmp_path.iterdir()) == []


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
    fp = _model()
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


def test_call_order_is_forward_order_and_misses_are_errors() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(2, 2)
            self.first = nn.Linear(2, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(self.first(x))

    model = Backwards()
    run = lambda m, b: m(b)  # noqa: E731
    assert call_order(model, ["second", "first"], torch.randn(1, 2), run) == ["first", "second"]
    with pytest.raises(RuntimeError, match="never reaches 1 units"):
        call_order(model, ["second", "unused"], torch.randn(1, 2), run)
