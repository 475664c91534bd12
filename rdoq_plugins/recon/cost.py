"""What reconstruction will cost, measured on one batch before any long work.

One forward pass of the FP model over the first calibration batch, with a hook on every unit,
gives each unit's forward order, its calls per pass (a head conv shared across pyramid levels runs
once per level) and the elements it reads and writes. From these :func:`plan_cache` projects the
bytes one unit's :class:`~rdoq_plugins.recon.ChunkCache` holds at the configured number of
calibration images, and how they split over the device, CPU memory and disk under the configured
budgets; :func:`check_disk` refuses a run whose spill cannot fit on the disk.
"""
from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

B = TypeVar("B")


@dataclass(frozen=True)
class UnitSurvey:
    """One unit in one forward pass: calls, and elements of its first input and of its output;
    ``shares_input``: the first unit (forward order) that received the very same input object,
    when both run once per pass (parallel branches; see :mod:`rdoq_plugins.recon.shared_capture`)."""

    name: str
    calls: int
    input_elements: int
    output_elements: int
    shares_input: str | None = None


@dataclass(frozen=True)
class UnitCachePlan:
    """Projected bytes of one unit's cache at ``images`` calibration images, per tier."""

    name: str
    calls: int
    bytes_per_image: int
    total: int
    device: int
    host: int
    disk: int


def _elements(x: Any) -> int:
    if isinstance(x, Tensor):
        return x.numel()
    feats = getattr(x, "features", None)  # a sparse tensor: its features are what is cached
    return feats.numel() if isinstance(feats, Tensor) else 0


@torch.no_grad()
def survey_units(model: nn.Module, names: Sequence[str], batch: B,
                 run: Callable[[nn.Module, B], Any]) -> list[UnitSurvey]:
    """The units ``names`` in forward order, with their calls and sizes in ``run(model, batch)``
    and the units that read the same input. A unit the forward pass never reaches is an error."""
    first: dict[str, int] = {}
    seen: list[tuple[str, weakref.ref[Any]]] = []  # each unit's first input, alive while the pass runs
    shares: dict[str, str] = {}
    calls: dict[str, int] = dict.fromkeys(names, 0)
    inputs: dict[str, int] = dict.fromkeys(names, 0)
    outputs: dict[str, int] = dict.fromkeys(names, 0)
    handles = []
    for name in names:
        def note(_: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            calls[name] += 1
            inputs[name] += _elements(args[0]) if args else 0
            outputs[name] += _elements(out)

        def order(_: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if name in first:
                return
            first[name] = len(first)
            if not args:
                return
            for other, ref in seen:  # identity of a live object: ids of freed objects are never compared
                if ref() is args[0]:
                    shares[name] = shares.get(other, other)
                    break
            try:
                seen.append((name, weakref.ref(args[0])))
            except TypeError:  # not weakly referenceable: never shared
                pass

        module = model.get_submodule(name)
        handles += [module.register_forward_pre_hook(order), module.register_forward_hook(note)]
    try:
        run(model, batch)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in first]
    if missing:
        raise RuntimeError(f"the forward pass never reaches {len(missing)} units, e.g. {missing[:3]}")
    shared = {n: r for n, r in shares.items() if calls[n] == 1 and calls[r] == 1}
    return [UnitSurvey(n, calls[n], inputs[n], outputs[n], shared.get(n))
            for n in sorted(names, key=first.__getitem__)]


def plan_cache(survey: Sequence[UnitSurvey], batch_images: int, images: int, element_bytes: int,
               device_bytes: int, host_bytes: int) -> list[UnitCachePlan]:
    """Each unit's cache (quantized input, FP input, FP output) at ``images`` images, filled tier
    by tier: ``device_bytes`` first, then ``host_bytes``, the rest on disk. Units are cached one at
    a time, so each gets the whole budget."""
    plans = []
    for s in survey:
        per_image = (2 * s.input_elements + s.output_elements) * element_bytes // max(1, batch_images)
        total = per_image * images
        plans.append(UnitCachePlan(s.name, s.calls, per_image, total, *split_tiers(total, device_bytes, host_bytes)))
    return plans


def split_tiers(total: float, device_bytes: float, host_bytes: float) -> tuple[Any, Any, Any]:
    """``(device, host, disk)`` bytes of a cache of ``total`` bytes, filled tier by tier."""
    device = min(total, device_bytes)
    host = min(total - device, host_bytes)
    return device, host, total - device - host


def gpu_cache_bytes(free: float, total: float) -> float:
    """The default GPU budget of one unit's cache: the free GPU memory less a reserve for the
    optimisation step (the larger of 4 GiB and 15 % of the GPU)."""
    return max(0.0, free - max(4 << 30, 0.15 * total))


def cost_summary(plans: Sequence[UnitCachePlan], images: int, iters: int, disk_passes: int,
                 tiers: dict[str, Any]) -> dict[str, Any]:
    """What goes in ``report.json``: per unit bytes and tiers, and the totals that matter."""
    gib = float(1 << 30)
    worst = max(plans, key=lambda p: p.total, default=None)
    return {
        "images": images,
        "iters": iters,
        "tiers": tiers,
        "disk_passes": disk_passes,
        "largest_unit": None if worst is None else worst.name,
        "largest_unit_gb": 0.0 if worst is None else round(worst.total / gib, 3),
        "disk_needed_gb": round(max((p.disk for p in plans), default=0) / gib, 3),
        "disk_read_gb": round(sum(p.disk for p in plans) * disk_passes / gib, 3),
        "units": [asdict(p) for p in plans],
    }


class DiskSpaceError(RuntimeError):
    """The reconstruction cache needs more disk than the spill folder's file system has free."""


def check_disk(plans: Sequence[UnitCachePlan], spill_parent: Path) -> None:
    """Raises :class:`DiskSpaceError` with the numbers when the largest spill does not fit."""
    needed = max((p.disk for p in plans), default=0)
    if needed == 0:
        return
    probe = spill_parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        worst = max(plans, key=lambda p: p.disk)
        raise DiskSpaceError(
            f"reconstruction would spill {_size(needed)} of {worst.name}'s cache to {spill_parent}, "
            f"which has {_size(free)} free; raise the cache budgets (QDropReconHook cache_gb / "
            f"gpu_cache_gb), lower 'calibrate', or free disk space")


def _size(n: float) -> str:
    return f"{n / (1 << 30):.1f} GB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MB"
