"""Projecting the reconstruction cache from one batch, and refusing a spill the disk cannot hold."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rdoq_plugins.recon import (
    DiskSpaceError,
    UnitCachePlan,
    check_disk,
    cost_summary,
    plan_cache,
    survey_units,
)


class Shared(nn.Module):
    """A stem, then a head conv called on two levels (registered before the stem)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 2, 1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.stem(x)
        return [self.head(f), self.head(f[:, :, ::2, ::2])]


def test_survey_counts_calls_and_elements_in_forward_order() -> None:
    model = Shared().eval()
    survey = survey_units(model, ["head", "stem"], torch.randn(2, 3, 8, 8), lambda m, b: m(b))
    assert [s.name for s in survey] == ["stem", "head"]
    stem, head = survey
    assert (stem.calls, stem.input_elements, stem.output_elements) == (1, 2 * 3 * 64, 2 * 4 * 64)
    assert (head.calls, head.input_elements, head.output_elements) == (2, 2 * 4 * 80, 2 * 2 * 80)
    with pytest.raises(RuntimeError, match="never reaches"):
        survey_units(model, ["stem"], torch.randn(1, 3, 4, 4), lambda m, b: m.stem(b)[:0] if False else None)


def test_plan_fills_device_then_host_then_disk() -> None:
    model = Shared().eval()
    survey = survey_units(model, ["stem", "head"], torch.randn(2, 3, 8, 8), lambda m, b: m(b))
    per_image = (2 * 3 * 64 + 4 * 64) * 2  # float16: quantized and FP input, FP output
    [stem, _] = plan_cache(survey, batch_images=2, images=10, element_bytes=2, device_bytes=3000, host_bytes=4000)
    assert stem.bytes_per_image == per_image and stem.total == 10 * per_image
    assert (stem.device, stem.host, stem.disk) == (3000, 4000, 10 * per_image - 7000)
    summary = cost_summary([stem], images=10, iters=100, disk_passes=2, tiers={})
    assert summary["largest_unit"] == "stem" and summary["disk_read_gb"] == round(2 * stem.disk / 2**30, 3)


def test_a_spill_larger_than_the_free_disk_is_refused(tmp_path: Path) -> None:
    check_disk([UnitCachePlan("small", 1, 1, 10, 0, 0, 10)], tmp_path / "new" / "spill")
    with pytest.raises(DiskSpaceError, match=r"huge.s cache .* (GB|MB) free"):
        check_disk([UnitCachePlan("huge", 1, 1 << 60, 1 << 60, 0, 0, 1 << 60)], tmp_path / "spill")
