"""Post-training calibration: activation ranges on FP activations, then weight ranges.

QDrop's order (Wei et al., ICLR 2022): with all fake quantization off, activation observers see
full-precision activations over the calibration batches; weight observers then see each weight
once. Afterwards observers are off and weight + activation quantization on.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn

from rdoq_plugins.memory import release_free_memory
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.modules.switch import quantizers, set_observer_state, set_quant_state

B = TypeVar("B")


@torch.no_grad()
def calibrate_weights(model: nn.Module) -> int:
    """Observes every quantized layer's weight once; returns the number of weights observed."""
    count = 0
    for layer in model.modules():
        if isinstance(layer, QuantLayer) and layer.weight_quantizer is not None:
            layer.weight_quantizer.observer.reset()
            layer.weight_quantizer.observe(layer.weight)  # type: ignore[arg-type]
            count += 1
    return count


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[B],
    run: Callable[[nn.Module, B], Any],
    progress: Callable[[Iterable[B]], Iterable[B]] | None = None,
) -> int:
    """Calibrates all quantizers of ``model``; returns the number of batches seen.

    Args:
        model: a model with quantized layers (see :func:`quantize_model`).
        batches: calibration batches.
        run: ``run(model, batch)`` runs the model on one batch (the adapter's forward).
        progress: optional wrapper for a progress bar (e.g. ``tqdm``).
    """
    for q in quantizers(model, weight=False):
        q.observer.reset()
    set_quant_state(model, weight=False, act=False)
    set_observer_state(model, weight=False, act=True)
    seen = 0
    for batch in progress(batches) if progress is not None else batches:
        run(model, batch)
        seen += 1
        release_free_memory()  # else freed feature maps stay resident, more with every batch
    set_observer_state(model, weight=False, act=False)
    empty = [q for q in quantizers(model, weight=False) if int(q.observer.num_batches) == 0]
    if seen == 0 or empty:
        raise RuntimeError(
            f"calibration saw {seen} batches and left {len(empty)} activation quantizers without "
            "data; are all quantized layers reached by the forward pass?"
        )
    calibrate_weights(model)
    set_quant_state(model, weight=True, act=True)
    return seen
