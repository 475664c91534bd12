"""ONNX Q/DQ export of the toy: checker, exact integers and containers, layer parity with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rdoq_plugins.export import weight_integers
from rdoq_plugins.export.onnx_qdq import OPSET, container, export_qdq
from rdoq_plugins.export.parity import run_parity
from tests.core.export.toy import toy_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _initializers(model: object) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: np.asarray(numpy_helper.to_array(t)).astype(np.float64) for t in model.graph.initializer}


def test_container_is_the_narrowest_holding_the_bits() -> None:
    assert container(2, True) == ("INT4", 4) and container(4, False) == ("UINT4", 4)
    assert container(5, True) == ("INT8", 8) and container(9, False) == ("UINT16", 16)


def test_export_carries_the_model_integers_and_passes_the_checker() -> None:
    model, x = toy_model()
    ex = export_qdq(model, (x,), model, ["x"], ["y"])
    onnx.checker.check_model(ex.model, full_check=True)
    assert ex.model.opset_import[0].version == OPSET
    inits = _initializers(ex.model)
    types = {t.name: t.data_type for t in ex.model.graph.initializer}
    # conv2: groups of 4 channels at [2, 3, 4, 5, 8, 0] bits -> int4 | int8 | int4 runs
    q2 = weight_integers(model.conv2.weight_quantizer, model.conv2.weight).q.numpy()
    runs = [("conv2.weight/0", 0, 12, onnx.TensorProto.INT4), ("conv2.weight/1", 12, 20, onnx.TensorProto.INT8),
            ("conv2.weight/2", 20, 24, onnx.TensorProto.INT4)]
    for tag, a, b, dtype in runs:
        assert types[f"{tag}/q"] == dtype
        assert np.array_equal(inits[f"{tag}/q"], q2[a:b])
    assert ex.layers["conv2"]["conv2.weight"]["bits"] == [0, 2, 3, 4, 5, 8]
    # asymmetric LSQ+ weight: uint containers and the model's rounded zero points
    q3 = weight_integers(model.conv3.weight_quantizer, model.conv3.weight)
    assert types["conv3.weight/0/q"] == onnx.TensorProto.UINT8 and types["conv3.weight/1/q"] == onnx.TensorProto.UINT4
    assert np.array_equal(inits["conv3.weight/1/zero_point"], np.repeat(q3.params.zero_point[1:2].numpy(), 8))
    ops = [n.op_type for n in ex.model.graph.node]
    assert ops.count("QuantizeLinear") == 4 and "rdoq" not in {n.domain for n in ex.model.graph.node}


def test_every_layer_matches_in_onnxruntime() -> None:
    model, x = toy_model(act_bits=3)  # 3-bit activations in uint4 containers: clipped
    ex = export_qdq(model, (x,), model, ["x"], ["y"], probe=True)
    assert ex.layers["conv1"]["conv1.input_quantizer"]["clipped"]
    groups = ex.layers["conv3"]["conv3.input_quantizer"]  # per-group activation bits in one uint8 container
    assert groups["container"] == "UINT8" and groups["bits"] == [3, 5, 8] and groups["clipped"]
    inputs = [(x,), (torch.randn_like(x) * 2,)]
    parity = run_parity(ex, model, model, inputs, ["x"])
    assert parity.first_over is None and parity.worst()[1] <= 1e-3, parity
    assert sorted(parity.per_layer()) == ["conv1", "conv2", "conv3", "fc"]
    assert max(parity.propagated.values()) <= 1e-3


def test_parity_names_the_first_layer_that_diverges() -> None:
    model, x = toy_model()
    ex = export_qdq(model, (x,), model, ["x"], ["y"], probe=True)
    with torch.no_grad():  # the PyTorch model moves one group of conv2 by a step after the export
        model.conv2.weight[4:8] += model.conv2.weight_quantizer.scale[1]
    parity = run_parity(ex, model, model, [(x,)], ["x"])
    assert parity.first_over == "conv2#0"


def test_a_quantizer_outside_the_layers_is_an_error_not_left_out() -> None:
    from rdoq_plugins.errors import InputError
    from rdoq_plugins.quant.fake_quantize import FakeQuantize

    model, x = toy_model()
    stray = FakeQuantize(observer="MinMaxObserver", bit=4, symmetric=False)
    stray(x)  # calibrated and on, as a block's output quantizer would be
    stray.enable_observer(False)
    stray.enable_fake_quant(True)
    model.block_out = stray
    with pytest.raises(InputError, match="block_out"):
        export_qdq(model, (x,), model, ["x"], ["y"])
    stray.enable_fake_quant(False)  # switched off, it quantizes nothing and the export runs
    export_qdq(model, (x,), model, ["x"], ["y"])
