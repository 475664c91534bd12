"""What onnxruntime's CPU provider makes of a Q/DQ model: integer kernels or dequantize + float.

onnxruntime's QDQ transformer (graph optimization level "all") replaces a
``DequantizeLinear -> Conv / MatMul / Gemm -> QuantizeLinear`` group whose tensors are 8-bit by
an integer kernel (``QLinearConv``, ``QLinearMatMul``, ``MatMulIntegerToFloat``, ``QGemm``...); every
DequantizeLinear left in the optimized graph runs as a dequantize kernel, and the operator after it
in float. :func:`kernel_summary` counts both from the optimized graph onnxruntime itself writes;
:func:`latency_ms` is the median wall time of a run. Both use the sessions of
:mod:`rdoq_plugins.export.ort_session` (the graph as evaluated). ``onnxruntime`` is imported inside.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rdoq_plugins.export.ort_session import exact_session

INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat",
               "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid",
               "DynamicQuantizeMatMul", "MatMulNBits")
FLOAT_COMPUTE = ("Conv", "FusedConv", "MatMul", "Gemm", "FusedMatMul", "FusedGemm")


def kernel_summary(model_bytes: bytes) -> dict[str, Any]:
    """Operator counts of the graph onnxruntime runs: integer kernels, float compute, dequantize."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        exact_session(model_bytes, 1, path)
        ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    return {"integer_kernels": {k: v for k, v in ops.items() if k in INTEGER_OPS},
            "float_compute": {k: v for k, v in ops.items() if k in FLOAT_COMPUTE},
            "dequantize": ops.get("DequantizeLinear", 0), "quantize": ops.get("QuantizeLinear", 0)}


def latency_ms(model_bytes: bytes, feeds: dict[str, np.ndarray], runs: int = 10, threads: int = 1) -> float:
    """Median milliseconds of ``runs`` runs (after one warm-up run)."""
    session = exact_session(model_bytes, threads)
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
