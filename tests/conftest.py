"""Shared test settings: CPU, deterministic seeds, and a min-max W4A4 quant config."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Min-max ranges, W4A4: fixed steps, so a quantized layer's output is checkable by hand.
MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}
