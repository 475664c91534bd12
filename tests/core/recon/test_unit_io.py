"""Units whose inputs are not tensors: capture, caching with a context (in memory and spilled), and
reconstruction through a UnitIO."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundingState
from rdoq_plugins.recon import ChunkCache, cache_unit, capture_calls, reconstruct_units


@dataclass
class Ragged:
    """Rows of several samples with their sample ids: a structured input, like a sparse tensor."""

    rows: Tensor
    ids: Tensor


class RowLinear(nn.Module):
    """A linear layer on the rows of a Ragged, plus each sample's mean row."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: Ragged) -> Ragged:
        y = self.fc(x.rows)
        means = torch.zeros(int(x.ids.max()) + 1, y.shape[1]).index_add_(0, x.ids, y)
        counts = torch.bincount(x.ids).clamp(min=1).unsqueeze(1)
        return Ragged(torch.relu(y + (means / counts)[x.ids]), x.ids)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = RowLinear(6, 8), RowLinear(8, 4)

    def forward(self, x: Ragged) -> Ragged:
        return self.b(self.a(x))


class RaggedIO:
    """The test's UnitIO: cache the rows, keep the ids as the context."""

    def __init__(self) -> None:
        self.snapshots = 0

    def snapshot(self, x: Any) -> Any:
        self.snapshots += 1
        return Ragged(x.rows.detach().clone(), x.ids.clone())

    def chunk(self, unit: nn.Module, quant_in: Any, fp_in: Any, fp_out: Any) -> tuple[Tensor, Tensor, Tensor, Any]:
        assert torch.equal(quant_in.ids, fp_in.ids)
        return quant_in.rows, fp_in.rows, fp_out.rows, {"ids": fp_in.ids, "n": [int(fp_in.ids.max()) + 1]}

    def run(self, unit: nn.Module, x: Tensor, context: Any) -> Tensor:
        return unit(Ragged(x, context["ids"])).rows


def _batches(n: int, seed: int = 0) -> list[Ragged]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        rows = 10 + 3 * i  # batches of different sizes
        out.append(Ragged(torch.randn(rows, 6, generator=gen), torch.randint(0, 2, (rows,), generator=gen)))
    return out


def _run(model: nn.Module, batch: Ragged) -> Any:
    return model(batch)


def test_capture_and_cache_through_a_unit_io(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fp = Net().eval()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 3}}))
    batches = _batches(3)
    calibrate(model, batches, _run)
    io = RaggedIO()
    [(inp, out)] = capture_calls(fp, fp.b, batches[0], _run, io=io)
    assert isinstance(inp, Ragged) and isinstance(out, Ragged) and io.snapshots == 2
    for budget in (1 << 30, 0):  # in memory, then everything spilled to disk
        with ChunkCache("cpu", budget, tmp_path) as cache:
            cache_unit(model, fp, "b", batches, _run, cache, io)
            assert cache.num_chunks == 3 and len(cache) == 3  # one sample per chunk
            assert (cache.bytes_on_disk > 0) == (budget == 0)
            q, f, o, ctx = cache.chunk_with_context(1)
            assert q.shape == f.shape == (13, 8) and o.shape == (13, 4) and ctx["n"] == [int(batches[1].ids.max()) + 1]
            assert torch.equal(o, fp.b(fp.a(batches[1])).rows)
            # A chunk with a context is drawn whole, never subsampled.
            gen = torch.Generator().manual_seed(0)
            assert all(len(cache.sample(2, gen)[0]) in (10, 13, 16) for _ in range(6))
            assert torch.equal(io.run(fp.b, f, ctx), o)


def test_reconstruction_through_a_unit_io_hardens_and_lowers_the_error() -> None:
    torch.manual_seed(0)
    fp = Net().eval()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 2}}))
    batches = _batches(4)
    calibrate(model, batches, _run)

    def error() -> float:
        with torch.no_grad():
            return sum(float((model(b).rows - fp(b).rows).pow(2).mean()) for b in batches)

    before = error()
    stats = reconstruct_units(model, fp, ["a", "b"], batches, _run,
                              QDropReconstructor(ReconConfig(iters=500, batch_size=4, lr=1e-2)), io=RaggedIO())
    assert [s.iters for s in stats.values()] == [500, 500]
    for name in ("a", "b"):
        q = model.get_submodule(name).fc.weight_quantizer
        assert isinstance(q, AdaRoundFakeQuantize) and q.state is RoundingState.HARD
    assert error() < 0.9 * before  # ~0.7x here; the nearest rounding it starts from gives 1.0x
