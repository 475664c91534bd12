"""Strict state-dict loading: every mismatch is an error naming the first keys of each kind."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins.files import StateDictMismatch, load_strict


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 1))


def test_a_matching_state_loads() -> None:
    model, other = _model(), _model()
    load_strict(model, other.state_dict(), "checkpoint x.pth")
    assert torch.equal(model[0].weight, other[0].weight)


def test_missing_and_unexpected_keys_are_named() -> None:
    state = _model().state_dict()
    del state["2.weight"]
    state["3.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatch) as err:
        load_strict(_model(), state, "checkpoint x.pth")
    assert str(err.value) == ("checkpoint x.pth does not match the model: 1 missing keys (e.g. ['2.weight']), "
                              "1 unexpected keys (e.g. ['3.weight'])")
    assert isinstance(err.value, KeyError)


def test_another_models_state_names_shapes_and_keys() -> None:
    other = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 1), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 4, 1),
                          nn.Conv2d(4, 4, 1))
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1))
    with pytest.raises(StateDictMismatch) as err:
        load_strict(model, other.state_dict(), "checkpoint other.pth")
    assert str(err.value) == (
        "checkpoint other.pth does not match the model: 3 keys with other shapes (e.g. 0.weight: [16, 3, 3, 3] "
        "given, [8, 3, 3, 3] in the model; 0.bias: [16] given, [8] in the model; 1.weight: [8, 16, 1, 1] given, "
        "[8, 8, 1, 1] in the model), 6 unexpected keys (e.g. ['2.weight', '2.bias', '3.weight'])")
