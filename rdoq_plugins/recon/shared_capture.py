"""Capturing parallel units together: one FP and one quantized pass per batch for a whole group.

Units that run once per forward pass and receive the very same input object (the branches of a
detection head, all fed the shared conv's output; see
:attr:`~rdoq_plugins.recon.cost.UnitSurvey.shares_input`) cannot feed one another, so
reconstructing one of them leaves the others' inputs unchanged. Capturing each alone runs the
model up to it twice per batch (FP and quantized); for the 36 head branches of a sparse 3-D detector that is
72 passes through the whole backbone per batch. :class:`SharedCaptures` runs the two passes once
for the group, keeps one snapshot of the shared input per pass and each unit's FP output, and fills
each unit's cache from them when its turn comes: the same chunks as the per-unit capture.

The held snapshots are bounded by a byte budget, projected from the first batch; a group over it is
captured unit by unit as before.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from rdoq_plugins.recon.capture import StopForward
from rdoq_plugins.recon.cost import UnitSurvey
from rdoq_plugins.recon.unit_io import UnitIO

B = TypeVar("B")
Held = tuple[Any, Any, Any]  # (quantized input, FP input, FP output) snapshots of one call


def input_groups(survey: Sequence[UnitSurvey], names: Sequence[str]) -> list[list[str]]:
    """Runs of consecutive ``names`` (in forward order) that read one input object, two or more
    units each."""
    root = {s.name: s.shares_input or s.name for s in survey}
    groups: list[list[str]] = []
    for name in names:
        if groups and name in root and root[name] == root.get(groups[-1][0]):
            groups[-1].append(name)
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def held_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the distinct tensors in ``obj`` (nested containers and objects' attributes)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(held_bytes(v, seen) for v in vars(obj).values())
    return 0


class _Pass:
    """Hooks on a group's units for one forward pass: snapshots of their inputs (one per distinct
    input object) and, with ``outputs``, of their outputs; stops after the last unit."""

    def __init__(self, units: Sequence[nn.Module], io: UnitIO | None, outputs: bool) -> None:
        self.inputs: list[Any] = [None] * len(units)
        self.outputs: list[Any] = [None] * len(units)
        self._last: tuple[Any, Any] | None = None  # (input object, its snapshot)
        self._io = io
        self._handles = []
        for i, unit in enumerate(units):
            last = i == len(units) - 1
            if outputs:
                self._handles.append(unit.register_forward_hook(self._after(i, last)))
            else:
                self._handles.append(unit.register_forward_pre_hook(self._before(i, last)))

    def _snap(self, x: Any) -> Any:
        if self._io is not None:
            return self._io.snapshot(x)
        if not isinstance(x, Tensor):
            raise TypeError(f"a shared capture needs tensor inputs and outputs, got {type(x).__name__}")
        return x.detach().clone()  # later units of the same pass may change it in place

    def _input(self, i: int, x: Any) -> None:
        if self._last is None or self._last[0] is not x:
            self._last = (x, self._snap(x))
        self.inputs[i] = self._last[1]

    def _before(self, i: int, last: bool) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
            self._input(i, args[0])
            if last:
                raise StopForward

        return hook

    def _after(self, i: int, last: bool) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            self._input(i, args[0])
            self.outputs[i] = self._snap(out)
            if last:
                raise StopForward

        return hook

    def run(self, model: nn.Module, batch: Any, run: Callable[[nn.Module, Any], Any]) -> None:
        try:
            run(model, batch)
        except StopForward:
            pass
        finally:
            for h in self._handles:
                h.remove()
            self._last = None
        missing = [i for i, x in enumerate(self.inputs) if x is None]
        if missing:
            raise RuntimeError(f"a shared capture never reached {len(missing)} of its units")


class SharedCaptures:
    """The captured calls of groups of parallel units, held until each unit's cache is filled."""

    def __init__(self, io: UnitIO | None, budget: int) -> None:
        self.io = io
        self.budget = budget
        self._held: dict[str, list[Held]] = {}
        self.refused: set[str] = set()  # units of groups over the budget: captured one by one
        self.passes_saved = 0  # capture passes the groups did not run, against unit by unit

    def __contains__(self, name: str) -> bool:
        return name in self._held

    @torch.no_grad()
    def capture(self, model: nn.Module, fp_model: nn.Module, names: Sequence[str], batches: Sequence[B],
                run: Callable[[nn.Module, B], Any]) -> bool:
        """Captures the units ``names`` (forward order, each called once per pass) on every batch;
        False (nothing held) when the first batch projects over the budget."""
        held: dict[str, list[Held]] = {n: [] for n in names}
        for b, batch in enumerate(batches):
            fp = _Pass([fp_model.get_submodule(n) for n in names], self.io, outputs=True)
            fp.run(fp_model, batch, run)
            quant = _Pass([model.get_submodule(n) for n in names], self.io, outputs=False)
            quant.run(model, batch, run)
            for i, n in enumerate(names):
                held[n].append((quant.inputs[i], fp.inputs[i], fp.outputs[i]))
            if b == 0 and held_bytes([held[n][0] for n in names]) * len(batches) > self.budget:
                self.refused.update(names)
                return False
        self._held.update(held)
        self.passes_saved += 2 * len(batches) * (len(names) - 1)
        return True

    def take(self, name: str) -> list[Held]:
        """Unit ``name``'s calls, one per batch, no longer held here."""
        return self._held.pop(name)
