"""Parity of an exported Q/DQ model with the fake-quantized PyTorch model, layer by layer.

Both run the same inputs: PyTorch with forward hooks on every quantized layer, onnxruntime on the
probed export (:func:`rdoq_plugins.export.onnx_qdq.export_qdq` with ``probe=True``), whose graph
outputs include each layer call's output. For each call, the difference is ``max |a - b|`` over
the PyTorch output's range, ``max(max - min, max |b|)`` (the magnitude bounds float rounding when
an output is nearly constant, e.g. an untrained classifier at its prior bias); the first call in
execution order above ``tol`` is named. ``onnxruntime`` is imported inside :func:`run_parity`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdoq_plugins.export.onnx_qdq import Exported
from rdoq_plugins.modules.quant_layer import QuantLayer

TOLERANCE = 1e-3


@dataclass
class Parity:
    """Per layer call (``name#k``) the largest relative difference, and the first one over ``tol``."""

    tol: float
    max_rel: dict[str, float] = field(default_factory=dict)
    final_max_abs: float = 0.0
    first_over: str | None = None

    def worst(self) -> tuple[str, float]:
        key = max(self.max_rel, key=self.max_rel.__getitem__)
        return key, self.max_rel[key]

    def per_layer(self) -> dict[str, float]:
        """The largest difference over each layer's calls."""
        out: dict[str, float] = {}
        for key, v in self.max_rel.items():
            name = key.rsplit("#", 1)[0]
            out[name] = max(out.get(name, 0.0), v)
        return out


def layer_outputs(root: nn.Module, run: Callable[[], Any]) -> dict[str, Tensor]:
    """Every quantized layer call's output while ``run()`` runs, keyed ``name#k``."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name, layer in root.named_modules():
        if isinstance(layer, QuantLayer):
            def hook(_m: nn.Module, _i: Any, out: Tensor, name: str = name) -> None:
                k = sum(key.startswith(name + "#") for key in seen)
                seen[f"{name}#{k}"] = out.detach().clone()
            handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return seen


def run_parity(exported: Exported, onnx_bytes: bytes, module: nn.Module, root: nn.Module,
               inputs: Iterable[Sequence[Tensor]], input_names: Sequence[str], tol: float = TOLERANCE) -> Parity:
    """Runs both models on every input tuple; see the module docstring."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    probe_of = {t: k for k, t in exported.probes.items()}
    result = Parity(tol)
    for args in inputs:
        expected = layer_outputs(root, lambda args=args: module(*args))
        with torch.no_grad():
            final = module(*args)
        final_t = final if isinstance(final, Tensor) else torch.cat([f.flatten() for f in final])
        got = dict(zip(names, session.run(None, {n: a.numpy() for n, a in zip(input_names, args)})))
        finals = [got[n] for n in exported.outputs]
        flat = np.concatenate([f.ravel() for f in finals])
        result.final_max_abs = max(result.final_max_abs, float(np.abs(flat - final_t.flatten().numpy()).max()))
        for tensor_name, key in probe_of.items():
            ref = expected[key].numpy()
            span = max(float(ref.max() - ref.min()), float(np.abs(ref).max())) or 1.0
            rel = float(np.abs(got[tensor_name] - ref).max()) / span
            result.max_rel[key] = max(result.max_rel.get(key, 0.0), rel)
    for key in exported.probes:  # graph (execution) order
        if result.max_rel[key] > tol:
            result.first_over = key
            break
    return result
