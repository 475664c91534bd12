"""onnxruntime loads every export with all its graph optimizations: a 4-bit activation beside a
weight in one 8-bit container takes an 8-bit container (onnxruntime's QDQ conv fusion checks only
the weight for 4-bit types and would build a QLinearConv that rejects the uint4 input). The graph as
written, optimized as the export's sessions optimize it, computes the model's outputs (onnxruntime's
WeightBiasQuantization, which rounds conv1's and fc's biases to int32, is left out)."""
from __future__ import annotations

import pytest

from rdoq_plugins.export.onnx_qdq import export_qdq
from rdoq_plugins.export.parity import run_parity
from tests.core.export.toy import toy_model

pytest.importorskip("onnxruntime")


def test_the_toy_loads_with_every_optimization() -> None:
    from rdoq_plugins.export.ort_kernels import kernel_summary

    model, x = toy_model()  # conv1: int8 weight, 4-bit activation
    ex = export_qdq(model, (x,), model, ["x"], ["y"])
    conv1 = ex.layers["conv1"]["conv1.input_quantizer"]
    assert conv1["container"] == "UINT8" and conv1["bits"] == [4] and conv1["clipped"]
    assert ex.layers["fc"]["fc.input_quantizer"]["container"] == "UINT4"  # beside a 4-bit weight: unchanged
    assert ex.layers["conv2"]["conv2.input_quantizer"]["container"] == "UINT4"  # mixed weight containers
    summary = kernel_summary(ex.model.SerializeToString())  # builds an optimized session: fails before the fix
    assert summary["dequantize"] > 0


def test_the_written_graph_computes_the_model_outputs() -> None:
    model, x = toy_model()
    written = export_qdq(model, (x,), model, ["x"], ["y"])
    probed = export_qdq(model, (x,), model, ["x"], ["y"], probe=True)
    parity = run_parity(probed, model, model, [(x,), (x * 2,)], ["x"], deployed=written.model)
    assert parity.deployed is not None and parity.deployed <= 1e-5, parity.deployed
