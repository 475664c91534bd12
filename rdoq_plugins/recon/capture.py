"""Capturing what a unit sees, with hooks, and stopping the forward pass once the unit is done.

This is the adapter protocol of the core: an adapter only supplies ``run(model, batch)``, which runs
the model on one batch. Hooks record every call of the unit (a head conv shared across pyramid
levels is called once per level); after the unit's last call the forward pass is stopped with
:class:`StopForward` (QDrop's "stop forward" exception), so no work is spent on later layers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from rdoq_plugins.recon.cost import survey_units
from rdoq_plugins.recon.unit_io import UnitIO

B = TypeVar("B")
Call = tuple[Any, Any]  # (input, output): tensors, or a UnitIO's snapshots


class StopForward(Exception):
    """Raised by a capture hook once the unit has run as often as it runs per forward pass."""


def _first_tensor(unit: nn.Module, args: tuple[Any, ...]) -> Tensor:
    if not args or not isinstance(args[0], Tensor):
        raise TypeError(f"capture needs a unit whose first input is a tensor ({type(unit).__name__})")
    return args[0]


@torch.no_grad()
def capture_calls(
    model: nn.Module,
    unit: nn.Module,
    batch: B,
    run: Callable[[nn.Module, B], Any],
    with_output: bool = True,
    num_calls: int | None = None,
    io: UnitIO | None = None,
) -> list[Call]:
    """``(input, output)`` of every call of ``unit`` while ``run(model, batch)`` runs.

    Args:
        model: the model that contains ``unit``.
        unit: the module to watch.
        batch: one batch.
        run: runs the model on a batch (the adapter's forward).
        with_output: record outputs too; else stop before the last call runs, outputs are None.
        num_calls: calls per forward pass, if known; the forward stops after the last one. If None,
            the forward runs to its end (learn the count on a first batch, pass it afterwards).
        io: for units whose input / output are not tensors: records ``io.snapshot`` of them.
    """
    calls: list[Call] = []

    def done() -> bool:
        return num_calls is not None and len(calls) >= num_calls

    def pre_hook(_: nn.Module, args: tuple[Any, ...]) -> None:
        if io is not None:
            calls.append((io.snapshot(args[0]), None))
        else:
            calls.append((_first_tensor(unit, args).detach(), None))
        if done():
            raise StopForward

    def hook(_: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if io is not None:
            calls.append((io.snapshot(args[0]), io.snapshot(out)))
        else:
            if not isinstance(out, Tensor):
                raise TypeError(f"capture needs a unit with a tensor output ({type(unit).__name__})")
            calls.append((_first_tensor(unit, args).detach(), out.detach()))
        if done():
            raise StopForward

    handle = unit.register_forward_hook(hook) if with_output else unit.register_forward_pre_hook(pre_hook)
    try:
        run(model, batch)
    except StopForward:
        pass
    finally:
        handle.remove()
    if not calls:
        raise RuntimeError(f"the forward pass never reached {type(unit).__name__}")
    if num_calls is not None and len(calls) != num_calls:
        raise RuntimeError(f"{type(unit).__name__} ran {len(calls)} times in a forward pass, expected {num_calls}")
    return calls


def call_order(model: nn.Module, names: list[str], batch: B, run: Callable[[nn.Module, B], Any]) -> list[str]:
    """``names`` sorted by when each module first runs in ``run(model, batch)``.

    Registration order is not always forward order (a detection head may register its predictors
    before the shared layers that feed them). A module the forward pass never reaches is an error.
    """
    return [s.name for s in survey_units(model, names, batch, run)]
