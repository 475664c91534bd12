"""onnxruntime sessions that run an exported Q/DQ model with the arithmetic it describes.

onnxruntime (1.20 and later) enables, from graph optimization level "basic" on, the transformer
``WeightBiasQuantization``: for a Conv / ConvTranspose / Gemm whose input comes from a per-tensor
``DequantizeLinear`` and whose weight from a ``DequantizeLinear``, it replaces the float bias ``b`` by
``round(b / (s_in * s_w)) * s_in * s_w`` (an int32 bias). The quantized model adds ``b`` in float,
so every such layer's output moves by up to ``s_in * s_w / 2``; with 4-bit steps that moves values
across activation grid points downstream (bench Faster R-CNN min-max W4A4: the network outputs differ
by up to 7.7 on a val image, box AP 0.6810 instead of 0.6702). Sessions built here disable that
transformer and keep every other optimization. ``onnxruntime`` is imported inside the functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# Graph transformers that change the numbers a Q/DQ graph computes.
INEXACT_OPTIMIZERS = ("WeightBiasQuantization",)


def session_options(threads: int = 0, optimized: Path | None = None) -> Any:
    """Level "all" options; ``threads`` intra-op threads (0: onnxruntime's default); ``optimized``:
    where onnxruntime writes the graph it runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    return opts


def exact_session(model_bytes: bytes, threads: int = 0, optimized: Path | None = None) -> Any:
    """A CPU session of ``model_bytes`` without :data:`INEXACT_OPTIMIZERS`."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, session_options(threads, optimized), providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(INEXACT_OPTIMIZERS))
