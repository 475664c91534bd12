"""Quantization units: counts, the channel of each unit, the [channels, elements] view, and the
encoding a state dict stores."""
from __future__ import annotations

import pytest
import torch

from rdoq_plugins.granularity import (
    PerChannel,
    PerGroup,
    PerTensor,
    channel_axis,
    channel_view,
    decode,
    encode,
    num_channels_of,
    unit_index,
)


def test_unit_counts_and_indices() -> None:
    assert PerTensor().num_units(7) == 1 and PerChannel(1).num_units(7) == 7
    assert PerGroup(0, 3).num_units(7) == 3 and PerGroup(0, 7).num_units(7) == 1 and PerGroup(0, 8).num_units(7) == 1
    assert unit_index(PerGroup(0, 3), 7).tolist() == [0, 0, 0, 1, 1, 1, 2]  # the last group is smaller
    assert unit_index(PerChannel(0), 4).tolist() == [0, 1, 2, 3]
    assert unit_index(PerTensor(), 3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="size must be >= 1"):
        PerGroup(0, 0)


def test_channel_view_puts_the_unit_axis_first() -> None:
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(channel_view(x, PerTensor()), x.reshape(1, -1))
    view = channel_view(x, PerChannel(1))
    assert view.shape == (3, 8) and torch.equal(view[1], x[:, 1].reshape(-1))
    assert torch.equal(channel_view(x, PerGroup(2, 2)), x.movedim(2, 0).reshape(4, 6))
    assert channel_axis(PerTensor()) is None and channel_axis(PerGroup(2, 2)) == 2
    assert num_channels_of(x, PerTensor()) == 1 and num_channels_of(x, PerChannel(2)) == 4


@pytest.mark.parametrize("g", [PerTensor(), PerChannel(0), PerChannel(1), PerGroup(0, 16), PerGroup(1, 3)])
def test_encoding_round_trips(g: PerTensor | PerChannel | PerGroup) -> None:
    code = encode(g)
    assert code.dtype == torch.long and code.shape == (3,)
    assert decode(code) == g and type(decode(code)) is type(g)


def test_encodings_differ() -> None:
    codes = {tuple(encode(g).tolist()) for g in (PerTensor(), PerChannel(0), PerChannel(1), PerGroup(0, 8),
                                                  PerGroup(1, 8), PerGroup(0, 4))}
    assert len(codes) == 6
