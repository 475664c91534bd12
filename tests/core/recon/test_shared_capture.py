"""Parallel units that read one input, captured together: the same chunks and the same
reconstruction as unit by unit, with fewer capture passes."""
from __future__ import annotations

import copy

import torch
from torch import nn

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import ChunkCache, cache_unit, reconstruct_units, survey_units
from rdoq_plugins.recon.shared_capture import SharedCaptures, input_groups
from rdoq_plugins.recon.unit_loop import add_held


class Branches(nn.Module):
    """A stem feeding two branches (one input object), then a conv on the second branch's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(6, 5, 3, padding=1), nn.ReLU())
        self.after = nn.Conv2d(5, 2, 1)
        self.stem_calls = 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.stem_calls += 1
        f = self.stem(x)
        return [self.a(f), self.after(self.b(f))]


UNITS = ["stem", "a", "b", "after"]


def _setup() -> tuple[nn.Module, nn.Module, list[torch.Tensor]]:
    fp = Branches().eval()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 2}}))
    batches = [torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    calibrate(model, batches, lambda m, b: m(b))
    return fp, model, batches


def _chunks(cache: ChunkCache) -> list[tuple[torch.Tensor, ...]]:
    return [cache.chunk(i) for i in range(cache.num_chunks)]


def test_the_survey_finds_the_branches_that_read_one_input() -> None:
    fp, _, batches = _setup()
    survey = survey_units(fp, UNITS, batches[0], lambda m, b: m(b))
    assert {s.name: s.shares_input for s in survey} == {"stem": None, "a": None, "b": "a", "after": None}
    assert input_groups(survey, UNITS) == [["a", "b"]]
    assert input_groups(survey, ["stem", "b", "after"]) == []  # one member left: nothing to share


def test_held_captures_equal_unit_by_unit_captures_after_a_branch_changes() -> None:
    fp, model, batches = _setup()
    run = lambda m, b: m(b)  # noqa: E731
    shared = SharedCaptures(None, 1 << 30)
    assert shared.capture(model, fp, ["a", "b"], batches, run)
    with torch.no_grad():  # what reconstructing the first branch does: change its weights
        model.a[0].weight.add_(0.5)
    for name in ("a", "b"):
        with ChunkCache() as alone, ChunkCache() as held:
            cache_unit(model, fp, name, batches, run, alone)
            add_held(model, name, shared.take(name), held, None)
            assert alone.batch_chunks == held.batch_chunks == [1, 1, 1]
            for x, y in zip(_chunks(alone), _chunks(held), strict=True):
                assert all(torch.equal(s, t) for s, t in zip(x, y, strict=True))
    assert "a" not in shared and shared.passes_saved == 2 * 3


def test_reconstruction_with_groups_equals_unit_by_unit_with_fewer_passes() -> None:
    results = []
    for groups, budget in (((), 1 << 30), ([["a", "b"]], 1 << 30), ([["a", "b"]], 1)):
        fp, model, batches = _setup()
        fp.stem_calls = model.stem_calls = 0
        reconstruct_units(model, fp, UNITS, batches, lambda m, b: m(b),
                          QDropReconstructor(ReconConfig(iters=20, batch_size=2), seed=3), groups=groups,
                          shared_bytes=budget)
        results.append((model.state_dict(), fp.stem_calls + model.stem_calls))
    (alone, passes_alone), (grouped, passes_grouped), (over_budget, passes_over) = results
    for key in alone:
        assert torch.equal(alone[key], grouped[key]) and torch.equal(alone[key], over_budget[key]), key
    assert passes_alone - passes_grouped == 2 * 3  # one FP and one quantized pass per batch fewer
    assert passes_over == passes_alone + 2  # the first batch's capture, refused over the budget
