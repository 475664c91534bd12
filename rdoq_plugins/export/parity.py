"""Parity of an exported Q/DQ model with the fake-quantized PyTorch model, layer by layer.

Both run the same inputs: PyTorch with hooks on every quantized layer, onnxruntime on the probed
export (:func:`rdoq_plugins.export.onnx_qdq.export_qdq` with ``probe=True``), whose graph outputs
include each layer call's output. Two differences per call, each ``max |a - b|`` over the PyTorch
output's range ``max(max - min, max |b|)`` (the magnitude bounds float rounding when an output is
nearly constant, e.g. an untrained classifier at its prior bias):

* ``isolated``: the layer alone (the ONNX nodes from its input to its output, extracted) fed with
  the input PyTorch gave it: its integers, steps, rounding and clipping, up to float rounding of the
  accumulation. The first call in execution order above ``tol`` is named (``first_over``).
* ``propagated``: the whole network's value at that layer. A float-rounding difference upstream can
  move a value across a rounding boundary of a low-bit activation grid, so this one can exceed
  ``tol`` by whole grid steps while every layer alone matches; it is reported, not checked.
* ``deployed`` (with ``deployed=``, the export without probes, as written): its outputs against
  PyTorch's, each over its own range. A probe output keeps onnxruntime from rewriting the nodes
  around it, so only this run sees what its optimizer does to the graph a user loads.

Sessions come from :func:`rdoq_plugins.export.ort_session.exact_session`.

``onnx`` and ``onnxruntime`` are imported inside :func:`run_parity`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdoq_plugins.export.onnx_qdq import Exported
from rdoq_plugins.export.ort_session import exact_session
from rdoq_plugins.modules.quant_layer import QuantLayer

TOLERANCE = 1e-3


@dataclass
class Parity:
    """Per layer call (``name#k``) the largest relative differences, and the first isolated one over ``tol``."""

    tol: float
    isolated: dict[str, float] = field(default_factory=dict)
    propagated: dict[str, float] = field(default_factory=dict)
    final_max_abs: float = 0.0
    deployed: float | None = None
    first_over: str | None = None

    def worst(self) -> tuple[str, float]:
        key = max(self.isolated, key=self.isolated.__getitem__)
        return key, self.isolated[key]

    def per_layer(self, which: str = "isolated") -> dict[str, float]:
        """The largest difference over each layer's calls."""
        out: dict[str, float] = {}
        for key, v in getattr(self, which).items():
            name = key.rsplit("#", 1)[0]
            out[name] = max(out.get(name, 0.0), v)
        return out


def layer_io(root: nn.Module, run: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Every quantized layer call's input and output while ``run()`` runs, keyed ``name#k``."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    handles = []
    for name, layer in root.named_modules():
        if isinstance(layer, QuantLayer):
            def pre(_m: nn.Module, args: Any, name: str = name) -> None:
                inputs[f"{name}#{sum(k.startswith(name + '#') for k in inputs)}"] = args[0].detach().clone()

            def post(_m: nn.Module, _a: Any, out: Tensor, name: str = name) -> None:
                outputs[f"{name}#{sum(k.startswith(name + '#') for k in outputs)}"] = out.detach().clone()
            handles += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return inputs, outputs


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    span = max(float(ref.max() - ref.min()), float(np.abs(ref).max())) or 1.0
    return float(np.abs(got - ref).max()) / span


def _session(model: Any) -> Any:
    return exact_session(model.SerializeToString(), torch.get_num_threads())


def _outputs(final: Any) -> list[np.ndarray]:
    return [final.numpy()] if isinstance(final, Tensor) else [f.numpy() for f in final]


def run_parity(exported: Exported, module: nn.Module, root: nn.Module, inputs: Iterable[Sequence[Tensor]],
               input_names: Sequence[str], tol: float = TOLERANCE, deployed: Any = None) -> Parity:
    """Runs both models on every input tuple; ``deployed``: the export without probes (ModelProto);
    see the module docstring."""
    from onnx.shape_inference import infer_shapes
    from onnx.utils import Extractor

    session = _session(exported.model)
    names = [o.name for o in session.get_outputs()]
    extractor = Extractor(infer_shapes(exported.model))
    alone = {key: _session(extractor.extract_model([exported.probe_inputs[key]], [t]))
             for key, t in exported.probes.items() if key in exported.probe_inputs}
    result = Parity(tol, deployed=None if deployed is None else 0.0)
    plain = None if deployed is None else _session(deployed)
    for args in inputs:
        seen_in, seen_out = layer_io(root, lambda args=args: module(*args))
        with torch.no_grad():
            final = module(*args)
        final_t = final if isinstance(final, Tensor) else torch.cat([f.flatten() for f in final])
        got = dict(zip(names, session.run(None, {n: a.numpy() for n, a in zip(input_names, args)})))
        flat = np.concatenate([got[n].ravel() for n in exported.outputs])
        result.final_max_abs = max(result.final_max_abs, float(np.abs(flat - final_t.flatten().numpy()).max()))
        if plain is not None:
            outs = plain.run(None, {n: a.numpy() for n, a in zip(input_names, args)})
            result.deployed = max([result.deployed or 0.0] + [_rel(o, r) for o, r in zip(outs, _outputs(final))])
        for key, tensor_name in exported.probes.items():
            ref = seen_out[key].numpy()
            result.propagated[key] = max(result.propagated.get(key, 0.0), _rel(got[tensor_name], ref))
            if key in alone:
                sess = alone[key]
                (out,) = sess.run(None, {sess.get_inputs()[0].name: seen_in[key].numpy()})
                result.isolated[key] = max(result.isolated.get(key, 0.0), _rel(out, ref))
    for key in exported.probes:  # graph (execution) order
        if result.isolated.get(key, 0.0) > tol:
            result.first_over = key
            break
    return result
