"""Capturing a unit's calls with hooks, stopping the forward pass after its last call, and the
forward order of units."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rdoq_plugins.recon import StopForward, call_order, capture_calls
from tests.core.recon.conftest import Pyramid, small_cnn


def test_capture_stops_after_the_units_last_call() -> None:
    model = small_cnn()
    calls: list[str] = []
    model[2].register_forward_pre_hook(lambda *_: calls.append("last"))
    x = torch.randn(3, 4, 5, 5)
    run = lambda m, b: m(b)
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
    model = small_cnn()
    with pytest.raises(RuntimeError, match="never reached"):
        capture_calls(model, model[2], torch.randn(1, 4, 5, 5), lambda m, b: m[0](b))


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
    run = lambda m, b: m(b)
    assert call_order(model, ["second", "first"], torch.randn(1, 2), run) == ["first", "second"]
    with pytest.raises(RuntimeError, match="never reaches 1 units"):
        call_order(model, ["second", "unused"], torch.randn(1, 2), run)


def test_a_unit_that_takes_no_tensor_needs_a_unit_io() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Takes()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner((x, x))

    class Takes(nn.Module):
        def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return pair[0] + pair[1]

    model = Pair()
    with pytest.raises(TypeError, match="first input is a tensor"):
        capture_calls(model, model.inner, torch.randn(2), lambda m, b: m(b))

    class Snapshot:
        def snapshot(self, x: object) -> object:
            return x[0].clone() if isinstance(x, tuple) else x.clone()

    [(inp, out)] = capture_calls(model, model.inner, torch.ones(2), lambda m, b: m(b), io=Snapshot())  # type: ignore[arg-type]
    assert torch.equal(inp, torch.ones(2)) and torch.equal(out, 2 * torch.ones(2))


def test_stop_forward_escapes_only_the_capture() -> None:
    model = small_cnn()
    reached: list[int] = []
    model[2].register_forward_pre_hook(lambda *_: reached.append(1))
    capture_calls(model, model[0], torch.randn(1, 4, 5, 5), lambda m, b: m(b), num_calls=1)
    assert reached == [] and issubclass(StopForward, Exception)
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks  # the hook is gone
