"""Per-level input quantizers: dispatch by cursor, calibration per level, and reconstruction that
replays each cached call at the level it ran at."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rdoq_plugins import QDropReconstructor, calibrate, load_quant_config, quantize_model
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.modules import LevelCursor, LevelQuantizer, QuantLayer, split_levels
from rdoq_plugins.recon import ChunkCache, cache_unit, reconstruct_units

SCALES = (8.0, 1.0)  # level 0 reads values 8x larger than level 1, as P3 vs P7 in RetinaHead


class LevelHead(nn.Module):
    """One conv shared by two pyramid levels; the loop over the levels moves the cursor."""

    def __init__(self, cursor: LevelCursor | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.cursor = cursor or LevelCursor(len(SCALES))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.cursor.reset()
        outs = []
        try:
            for level, scale in enumerate(SCALES):
                self.cursor.step()
                outs.append(self.conv(scale * x[:, :, :: 2**level, :: 2**level]))
        finally:  # also when capture stops the forward pass
            self.cursor.reset()
        return outs


def _run(model: nn.Module, batch: torch.Tensor) -> list[torch.Tensor]:
    return model(batch)


def _quantized(a_qconfig: dict[str, object], split: bool = True) -> tuple[LevelHead, LevelHead]:
    fp = LevelHead().eval()
    model = copy.deepcopy(fp)
    quantize_model(model, load_quant_config({"w_qconfig": {"bit": 8}, "a_qconfig": {"bit": 4, **a_qconfig}}))
    if split:
        assert split_levels(model, model.cursor) == ["conv"]
    return fp, model


def test_cursor_steps_through_its_levels_and_no_further() -> None:
    cursor = LevelCursor(2)
    assert cursor.level is None and cursor.step() == 0 and cursor.step() == 1
    with pytest.raises(RuntimeError, match="more than its 2 pyramid levels"):
        cursor.step()
    cursor.reset()
    assert cursor.level is None and cursor.step() == 0


def test_each_level_calibrates_its_own_step_and_cuts_the_error() -> None:
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    errors = {}  # per level: output MSE
    for split in (False, True):
        fp, model = _quantized({"observer": "MinMaxObserver"}, split)
        calibrate(model, batches, _run)
        with torch.no_grad():
            errors[split] = [sum((model(b)[i] - fp(b)[i]).pow(2).mean().item() for b in batches) for i in (0, 1)]
    q = model.conv.input_quantizer
    assert isinstance(q, LevelQuantizer) and len(q.levels) == 2
    ratio = float(q.levels[0].scale.detach() / q.levels[1].scale.detach())
    assert 5.0 < ratio < 12.0  # each level's range, not the envelope of both
    assert errors[True][1] < 0.1 * errors[False][1]  # the small level gets a step its own size
    assert errors[True][0] < 1.2 * errors[False][0]
    assert "conv.input_quantizer.levels.1.scale" in model.state_dict()
    with pytest.raises(RuntimeError, match="outside its head's level loop"):
        model.conv(torch.randn(1, 3, 4, 4))


def test_a_deepcopy_shares_its_own_cursor() -> None:
    _, model = _quantized({})
    twin = copy.deepcopy(model)
    q = twin.conv.input_quantizer
    assert isinstance(q, LevelQuantizer) and q.cursor is twin.cursor and twin.cursor is not model.cursor


def test_reconstruction_replays_each_call_at_its_level() -> None:
    batches = [torch.randn(2, 3, 8, 8) for _ in range(2)]
    fp, model = _quantized({"quantizer": "LSQFakeQuantize"})
    calibrate(model, batches, _run)
    q = model.conv.input_quantizer
    assert isinstance(q, LevelQuantizer)
    with ChunkCache() as cache:
        cache_unit(model, fp, "conv", batches, _run, cache)
        tags = [cache.sample_tagged(8, torch.Generator().manual_seed(i))[1] for i in range(20)]
        assert set(tags) == {(0,), (1,)}
    before = [float(level.scale) for level in q.levels]
    layer = model.conv
    assert isinstance(layer, QuantLayer)
    reconstruct_units(model, fp, ["conv"], batches, _run, QDropReconstructor(ReconConfig(iters=60, batch_size=2)))
    after = [float(level.scale) for level in q.levels]
    assert all(a != b for a, b in zip(after, before))  # both levels' steps learned (a wrong level would raise)
    assert model.cursor.level is None
