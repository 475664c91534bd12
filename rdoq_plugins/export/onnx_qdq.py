"""ONNX export with QuantizeLinear / DequantizeLinear nodes carrying the model's exact integers.

A quantized model is traced (TorchScript exporter, opset 20) with the markers of
:mod:`rdoq_plugins.export.marks`, then rewritten for opset 21 (ONNX operator specs,
QuantizeLinear-21 / DequantizeLinear-21: int4 / uint4 containers and per-axis scales):

* weight ``rdoq::W`` -> ``DequantizeLinear`` of an integer initializer holding
  :func:`~rdoq_plugins.export.integers.weight_integers`, per-axis scales (a channel group's step is
  repeated over its channels) and zero points; channel runs whose groups need different containers
  (the narrowest of int4 / int8 / int16, uint* when asymmetric) get one DequantizeLinear each,
  joined by ``Concat``. A group of ``b`` bits below its container holds integers of the ``b``-bit
  range only, so it is exact; a pruned (0-bit) group is zeros.
* activation ``rdoq::Act`` -> ``[Max, Min] -> QuantizeLinear -> DequantizeLinear``; the clip to the
  ``b``-bit range (in float, on the grid's end points) is added only when ``b`` is below the container.
  Beside a weight in one 8-bit container, the activation's container is 8-bit too (:func:`act_min_bits`).
* ``rdoq::In`` / ``rdoq::Out`` -> ``Identity`` whose output names a layer call's input / output
  (the outputs become graph outputs with ``probe``).

Opset 21 changed only the types of the opset-20 operators it revised, so the traced operators keep
their meaning. ``onnx`` is imported inside the functions: the core imports no ONNX package.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rdoq_plugins.export.integers import LayerIntegers, NotDeployableError, QuantParams
from rdoq_plugins.export.marks import Marks, marked
from rdoq_plugins.granularity import channel_axis, unit_index

OPSET = 21
TRACE_OPSET = 20
CONTAINERS = ((4, "INT4", "UINT4"), (8, "INT8", "UINT8"), (16, "INT16", "UINT16"))


@dataclass
class Exported:
    """The rewritten graph and, per layer, what it became."""

    model: Any  # onnx.ModelProto
    marks: Marks
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)  # output key -> tensor name, in graph order
    outputs: list[str] = field(default_factory=list)  # the model's own outputs
    probe_inputs: dict[str, str] = field(default_factory=dict)  # output key -> its layer input tensor


def container(bits: int, symmetric: bool) -> tuple[str, int]:
    """The narrowest ONNX integer type (name, width) holding ``bits`` bits."""
    for width, signed, unsigned in CONTAINERS:
        if bits <= width:
            return (signed if symmetric else unsigned), width
    raise NotDeployableError(f"{bits} bits exceed the widest container (16)")


def _int_tensor(name: str, type_name: str, values: np.ndarray) -> Any:
    from onnx import TensorProto, helper

    dtype = getattr(TensorProto, type_name)
    return helper.make_tensor(name, dtype, list(values.shape), values.astype(np.int64).ravel().tolist())


def _float_tensor(name: str, values: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _per_channel(values: torch.Tensor, p: QuantParams, channels: int) -> np.ndarray:
    return values[unit_index(p.granularity, channels)].numpy()


def _weight_nodes(key: str, out: str, ints: LayerIntegers, inits: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """DequantizeLinear node(s) producing ``out`` from ``ints`` (see the module docstring)."""
    from onnx import helper

    p = ints.params
    axis = channel_axis(p.granularity)
    q = ints.q.numpy()
    axis = 0 if axis is None else axis % q.ndim
    channels = q.shape[axis] if channel_axis(p.granularity) is not None else 1
    unit_of = unit_index(p.granularity, channels).numpy()
    bits = p.bits.numpy()
    kinds = [container(int(bits[u]), p.symmetric) for u in unit_of]
    runs: list[tuple[int, int]] = []  # channel ranges with one container
    for c in range(channels):
        if runs and kinds[c] == kinds[runs[-1][0]]:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    scale = _per_channel(p.scale, p, channels).astype(np.float32)
    zp = np.where(bits[unit_of] > 0, _per_channel(p.zero_point, p, channels), 0).astype(np.int64)
    nodes, names = [], []
    for i, (a, b) in enumerate(runs):
        type_name, width = kinds[a]
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if p.symmetric else (0, (1 << width) - 1)
        if zp[a:b].min() < lo or zp[a:b].max() > hi:
            raise NotDeployableError(f"{key}: zero points {zp[a:b].min()}..{zp[a:b].max()} outside {type_name}")
        tag = f"{key}/{i}" if len(runs) > 1 else key
        part = q if channel_axis(p.granularity) is None else np.take(q, np.arange(a, b), axis=axis)
        inits += [_int_tensor(f"{tag}/q", type_name, part), _float_tensor(f"{tag}/scale", scale[a:b]),
                  _int_tensor(f"{tag}/zero_point", type_name, zp[a:b])]
        if channel_axis(p.granularity) is None:
            inits[-2], inits[-1] = _float_tensor(f"{tag}/scale", scale[0]), _int_tensor(
                f"{tag}/zero_point", type_name, np.asarray(zp[0]))
        name = out if len(runs) == 1 else f"{tag}/w"
        nodes.append(helper.make_node("DequantizeLinear", [f"{tag}/q", f"{tag}/scale", f"{tag}/zero_point"], [name],
                                      name=f"{tag}/DequantizeLinear", axis=axis))
        names.append(name)
    if len(runs) > 1:
        nodes.append(helper.make_node("Concat", names, [out], name=f"{key}/Concat", axis=axis))
    used = sorted({k[0] for k in kinds})
    return nodes, {"containers": used, "runs": len(runs), "bits": sorted({int(b) for b in bits.tolist()})}


def act_min_bits(key: str, marks: Marks) -> int:
    """The fewest bits the container of activation ``key`` must hold: 5 (an 8-bit container) when
    its layer's weight is one 8-bit-container DequantizeLinear, else 0. onnxruntime 1.32's QDQ conv
    selector checks only the weight for 4-bit types, so a 4-bit activation beside an 8-bit weight is
    fused into a QLinearConv that then rejects the uint4 input and the session fails to load; in an
    8-bit container, clipped to its bits, the activation is the same (exact)."""
    layer = next((n for n, ks in marks.layer_keys.items() if key in ks), None)
    for wkey in (k for k in marks.layer_keys.get(layer, []) if k in marks.weights):  # type: ignore[arg-type]
        p = marks.weights[wkey].params
        if {container(int(b), p.symmetric)[1] for b in p.bits.tolist()} == {8}:
            return 5
    return 0


def _act_nodes(key: str, src: str, out: str, p: QuantParams, in_shape: list[int],
               inits: list[Any], min_bits: int = 0) -> tuple[list[Any], dict[str, Any]]:
    """``[Max, Min] -> QuantizeLinear -> DequantizeLinear`` from ``src`` to ``out``; per-channel (or
    channel-group) steps become per-axis ones, repeated over each group's channels; the container
    holds at least ``min_bits``."""
    from onnx import helper

    bits = p.bits.numpy()
    if (bits == 0).any():
        raise NotDeployableError(f"{key}: a pruned activation unit has no integer form")
    type_name, width = container(max(int(bits.max()), min_bits), p.symmetric)
    axis = channel_axis(p.granularity)
    per_axis = axis is not None
    if per_axis:
        axis = axis % len(in_shape)
        idx = unit_index(p.granularity, in_shape[axis]).numpy()
    else:
        idx = np.zeros(1, dtype=np.int64)
    lo_q, hi_q = (t.numpy()[idx] for t in p.bounds())
    s, z = p.scale.numpy().astype(np.float32)[idx], p.zero_point.numpy().astype(np.int64)[idx]
    scalar = (lambda a: a) if per_axis else (lambda a: a.reshape(()))
    inits += [_float_tensor(f"{key}/scale", scalar(s)), _int_tensor(f"{key}/zero_point", type_name, scalar(z))]
    nodes, x = [], src
    if int(bits.min()) < width:  # some unit below its container: clip to its b-bit grid in float
        bshape = (-1,) + (1,) * (len(in_shape) - axis - 1) if per_axis else ()
        lo_f = ((lo_q - z).astype(np.float32) * s).astype(np.float32).reshape(bshape)
        hi_f = ((hi_q - z).astype(np.float32) * s).astype(np.float32).reshape(bshape)
        inits += [_float_tensor(f"{key}/lo", np.minimum(lo_f, hi_f)), _float_tensor(f"{key}/hi", np.maximum(lo_f, hi_f))]
        nodes += [helper.make_node("Max", [src, f"{key}/lo"], [f"{key}/ge"], name=f"{key}/Max"),
                  helper.make_node("Min", [f"{key}/ge", f"{key}/hi"], [f"{key}/clipped"], name=f"{key}/Min")]
        x = f"{key}/clipped"
    extra = {"axis": int(axis)} if per_axis else {}
    nodes += [helper.make_node("QuantizeLinear", [x, f"{key}/scale", f"{key}/zero_point"], [f"{key}/q"],
                               name=f"{key}/QuantizeLinear", **extra),
              helper.make_node("DequantizeLinear", [f"{key}/q", f"{key}/scale", f"{key}/zero_point"], [out],
                               name=f"{key}/DequantizeLinear", **extra)]
    return nodes, {"container": type_name, "bits": sorted({int(b) for b in bits.tolist()}), "clipped": len(nodes) > 2}


def _prune(graph: Any) -> None:
    """Drops nodes whose outputs nothing reads and initializers no node reads (the traced FP
    weights and fake-quantization arithmetic the markers replaced)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = outputs | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)


def rewrite(model: Any, marks: Marks, probe: bool) -> Exported:
    """Replaces the markers of a traced model by Q/DQ nodes (in place) and sets opset 21."""
    from onnx import TensorProto, helper

    graph = model.graph
    result = Exported(model, marks)
    new_nodes, inits = [], []
    weight_out: dict[str, str] = {}
    for node in graph.node:
        if node.domain != "rdoq":
            new_nodes.append(node)
            continue
        key = next(a.s.decode() for a in node.attribute if a.name == "key")
        if node.op_type == "W" and key in weight_out:  # a layer shared by pyramid levels: one weight
            nodes, info = [helper.make_node("Identity", [weight_out[key]], [node.output[0]],
                                            name=f"{key}/{node.output[0]}")], {}
        elif node.op_type == "W":
            nodes, info = _weight_nodes(key, node.output[0], marks.weights[key], inits)
            weight_out[key] = node.output[0]
        elif node.op_type == "Act":
            nodes, info = _act_nodes(key, node.input[0], node.output[0], marks.acts[key], marks.in_shapes[key],
                                     inits, act_min_bits(key, marks))
        elif node.op_type == "In":
            nodes, info = [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=key)], {}
            result.probe_inputs[key[:-1]] = node.output[0]
        else:
            nodes, info = [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=key)], {}
            result.probes[key] = node.output[0]
        new_nodes += nodes
        if node.op_type == "In":
            continue
        layer = marks.outputs.get(key) or next(n for n, ks in marks.layer_keys.items() if key in ks)
        entry = result.layers.setdefault(layer, {}).setdefault(key, info)
        entry.setdefault("nodes", []).extend(n.name for n in nodes)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(inits)
    result.outputs = [o.name for o in graph.output]
    if probe:
        graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, [f"{k}:{i}" for i in
                                                                              range(len(marks.shapes[k]))])
                            for k, t in result.probes.items() if t not in result.outputs)
    _prune(graph)
    del graph.value_info[:]  # traced shapes of renamed tensors; onnxruntime infers them again
    for out in graph.output:  # the tracer can give two outputs one symbolic size (FPN P6 and P7)
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            if dim.dim_param:
                dim.dim_param = f"{out.name}_{i}"
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET)])
    model.ir_version = max(model.ir_version, 10)
    return result


def export_qdq(module: nn.Module, args: tuple[Any, ...], root: nn.Module, input_names: list[str],
               output_names: list[str], probe: bool = False,
               dynamic_axes: dict[str, dict[int, str]] | None = None) -> Exported:
    """Traces ``module(*args)`` (which runs the quantized ``root``) and rewrites it to Q/DQ form.

    ``probe``: every quantized layer's output is also a graph output (for the parity check).
    ``dynamic_axes``: as ``torch.onnx.export``'s."""
    import onnx

    buffer = io.BytesIO()
    with torch.no_grad():
        for layer in root.modules():  # fills the weight caches so the trace holds no rounding arithmetic
            if hasattr(layer, "quantized_weight"):
                layer.quantized_weight()
        with marked(root, probe=probe) as marks:
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=TRACE_OPSET,
                              input_names=input_names, output_names=output_names, do_constant_folding=True,
                              custom_opsets={"rdoq": 1}, dynamic_axes=dynamic_axes)
    return rewrite(onnx.load_from_string(buffer.getvalue()), marks, probe)


def save(exported: Exported, path: Path, check: bool = True) -> None:
    """Writes the model; ``check``: ``onnx.checker`` with full checks (types and shapes) first."""
    import onnx

    if check:
        onnx.checker.check_model(exported.model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(exported.model, str(path))
