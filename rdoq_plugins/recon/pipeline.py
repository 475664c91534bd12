"""Unit-by-unit reconstruction of a whole model, in forward order (QDrop, Wei et al., ICLR 2022).

For each unit: capture its input in the quantized model (earlier units already reconstructed) and
its input and output in the FP model, then optimize it. Adapters choose the units and how a batch
runs; storage, resume and distributed averaging live in the adapters.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from torch import nn

from rdoq_plugins.recon.cache import TensorCache
from rdoq_plugins.recon.capture import capture_io
from rdoq_plugins.recon.reconstruct import QDropReconstructor, ReconStats

B = TypeVar("B")


def reconstruct_units(
    model: nn.Module,
    fp_model: nn.Module,
    unit_names: Sequence[str],
    batches: Iterable[B],
    run: Callable[[nn.Module, B], Any],
    reconstructor: QDropReconstructor,
    progress: Callable[[str], Callable[[Iterable[int]], Iterable[int]]] | None = None,
) -> dict[str, ReconStats]:
    """Reconstructs ``model``'s units in order against ``fp_model`` (same module names).

    Args:
        model: the calibrated quantized model (changed in place).
        fp_model: the FP model, with BN folded the same way.
        unit_names: module names of the units, in forward order.
        batches: calibration batches (iterated twice per unit: re-iterable, e.g. a list).
        run: ``run(model, batch)`` runs a model on one batch.
        reconstructor: the configured reconstructor.
        progress: ``progress(unit_name)`` returns a wrapper for that unit's iteration loop.
    """
    batches = list(batches)
    stats: dict[str, ReconStats] = {}
    for name in unit_names:
        quant_in, _ = capture_io(model, model.get_submodule(name), batches, run, with_output=False)
        fp_in, fp_out = capture_io(fp_model, fp_model.get_submodule(name), batches, run)
        assert fp_out is not None
        cache = TensorCache(quant_in, fp_in, fp_out)
        stats[name] = reconstructor(model.get_submodule(name), cache, progress(name) if progress else None)
    return stats
