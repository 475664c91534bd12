"""Units whose input and output are not plain tensors (e.g. a sparse convolution library's tensors).

The core caches, mixes (QDrop) and compares plain tensors. A unit of a sparse detector takes and
returns a structured object: a features tensor plus structure (active sites, spatial shape,
rulebooks). An adapter passes a :class:`UnitIO` to :func:`~rdoq_plugins.recon.cache_unit`,
:func:`~rdoq_plugins.recon.capture_calls` and the reconstructor; it says how to take such objects
apart when they are captured and how to run the unit on a features tensor again, so the core never
imports the framework. Without one (``io=None``) inputs and outputs must be tensors.

A chunk cached through a ``UnitIO`` carries a *context* (the structure of that call) and is one
sample: its rows (e.g. voxels) belong to the structure and are never subsampled or mixed with
another chunk's rows.
"""
from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn


class UnitIO(Protocol):
    """Converts a unit's structured inputs and outputs to tensors and back."""

    def snapshot(self, x: Any) -> Any:
        """What to keep of a unit's input or output at capture time: detached, and safe from
        in-place changes that later layers of the same forward pass may make."""
        ...

    def chunk(self, unit: nn.Module, quant_in: Any, fp_in: Any, fp_out: Any) -> tuple[Tensor, Tensor, Tensor, Any]:
        """One call's cache entry from its snapshots: the quantized-input, FP-input and FP-output
        tensors (the two inputs aligned element by element) and the context :meth:`run` needs.

        The context must be a plain structure (tensors, numbers, strings, None, and lists / tuples /
        dicts of them), so it can be counted in the cache's memory budget and spilled to disk with
        ``torch.load(weights_only=True)``.
        """
        ...

    def run(self, unit: nn.Module, x: Tensor, context: Any) -> Tensor:
        """``unit``'s output tensor for the input tensor ``x`` rebuilt with ``context``, aligned
        with the cached FP output."""
        ...
