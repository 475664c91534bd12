"""What the workflow needs from a detection framework: :class:`ModelAdapter`.

An adapter runs the framework's detector on one calibration batch, names the tensors RD
distortion is measured on, counts a batch's images (or frames) and names the reconstruction units.
The workflow never looks inside a batch; it only hands batches back to the adapter.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from rdoq_plugins.recon.unit_io import UnitIO


@runtime_checkable
class ModelAdapter(Protocol):
    """One framework's detector as the workflow sees it.

    Attributes:
        unit_io: how to cache and rebuild units whose inputs and outputs are not plain tensors
            (sparse tensors); None for tensor units.
        target_tag: a short word naming the distortion target when it is not the raw outputs
            (e.g. ``scores``); it keys the stored RD curves, empty otherwise.
    """

    unit_io: UnitIO | None
    target_tag: str

    def run(self, model: nn.Module, batch: Any) -> Any:
        """One forward pass of ``model`` on ``batch`` (calibration and reconstruction capture)."""

    def targets(self, model: nn.Module, batch: Any) -> Sequence[Tensor]:
        """The outputs RD distortion is measured on (every quantized layer must reach them)."""

    def images(self, batch: Any) -> int:
        """The images (or point-cloud frames) in ``batch``."""

    def units(self, model: nn.Module) -> list[str]:
        """Module names of the reconstruction units of the quantized ``model``."""
