"""Min / max observers (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018)."""
from __future__ import annotations

from rdoq_plugins.observers.base import Observer
from rdoq_plugins.registry import OBSERVERS


@OBSERVERS.register("MinMaxObserver")
class MinMaxObserver(Observer):
    """Running min / max per unit (the envelope over all batches)."""

    averaging = False


@OBSERVERS.register("AvgMinMaxObserver")
class AvgMinMaxObserver(Observer):
    """Average of the per-batch min / max per unit."""

    averaging = True
