"""Capturing a unit's inputs and outputs with a forward hook, stopping the forward at the unit.

This is the adapter protocol of the core: an adapter only supplies ``run(model, batch)``, which
runs the model on one batch; the hook records what reaches the unit and then stops the forward
pass (QDrop's "stop forward" exception), so no work is spent on the layers after it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

B = TypeVar("B")


class StopForward(Exception):
    """Raised by the capture hook once the unit has run."""


def _first_tensor(unit: nn.Module, args: tuple[Any, ...]) -> Tensor:
    if not args or not isinstance(args[0], Tensor):
        raise TypeError(f"capture_io needs a unit whose first input is a tensor ({type(unit).__name__})")
    return args[0]


@torch.no_grad()
def capture_io(
    model: nn.Module,
    unit: nn.Module,
    batches: Iterable[B],
    run: Callable[[nn.Module, B], Any],
    with_output: bool = True,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The unit's first positional input (and output) for every batch, concatenated on dim 0.

    Args:
        model: the model that contains ``unit``.
        unit: the module whose input / output to record.
        batches: the calibration batches.
        run: ``run(model, batch)`` runs the model on one batch.
        with_output: also run the unit and record its output; else stop before the unit runs.
        device: where to keep the captured tensors (default: where they were produced).
    """
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []

    def keep(t: Tensor, into: list[Tensor]) -> None:
        into.append(t.detach().to(device or t.device))

    def pre_hook(_: nn.Module, args: tuple[Any, ...]) -> None:
        keep(_first_tensor(unit, args), inputs)
        raise StopForward

    def hook(_: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if not isinstance(out, Tensor):
            raise TypeError(f"capture_io needs a unit with a tensor output ({type(unit).__name__})")
        keep(_first_tensor(unit, args), inputs)
        keep(out, outputs)
        raise StopForward

    handle = unit.register_forward_hook(hook) if with_output else unit.register_forward_pre_hook(pre_hook)
    try:
        for batch in batches:
            try:
                run(model, batch)
            except StopForward:
                pass
            else:
                raise RuntimeError(f"the forward pass never reached {type(unit).__name__}")
    finally:
        handle.remove()
    return torch.cat(inputs), (torch.cat(outputs) if with_output else None)
