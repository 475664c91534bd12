"""Watching quantized layers during an RD pass: their inputs (per call) and their weights' gradients.

The model's fake quantization is switched off, so the pass is the FP model; the quantized layers
are only the places where curves are taken.

A layer input is a tensor (dim 0: the samples) or the sparse tensor of a sparse convolution library:
its ``.features`` ``[voxels, C]`` are what an activation quantizer sees, ``.replace_feature`` puts
them back, and ``.indices[:, 0]`` says which sample each voxel belongs to. It is read by duck
typing, so the core never imports such a library.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from rdoq_plugins.granularity import PerGroup, unit_index
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.modules.switch import quantizers


def layer_input(x: object, name: str) -> tuple[Tensor, Callable[[Tensor], object], Tensor | None]:
    """``(values, put_back, sample_of_row)`` of a layer input: a tensor is its own values (rows are
    samples: ``None``); a sparse tensor gives its features and each voxel's sample index."""
    if isinstance(x, Tensor):
        return x, lambda t: t, None
    features, replace, indices = (getattr(x, a, None) for a in ("features", "replace_feature", "indices"))
    if isinstance(features, Tensor) and callable(replace) and isinstance(indices, Tensor):
        return features, replace, indices[:, 0].long()
    raise TypeError(f"{name}: RD curves need a tensor input or a sparse tensor with .features, .indices and "
                    f".replace_feature, got {type(x).__name__}")


class InputProbe:
    """Records the input of each watched layer at every call; optionally lets a hook rewrite it.

    With ``track_grad``, each recorded input is a fresh autograd node (a clone, or a leaf when the
    input needs no gradient), so ``autograd.grad`` can return the gradient for this layer's use of it.
    Sparse inputs are recorded as their features, with each row's sample in ``samples``.
    """

    def __init__(self, layers: Mapping[str, nn.Module], track_grad: bool, record: bool = True) -> None:
        self.layers = dict(layers)
        self.track_grad = track_grad
        self.record = record
        self.calls: dict[str, list[Tensor]] = {name: [] for name in layers}
        self.samples: dict[str, list[Tensor | None]] = {name: [] for name in layers}
        self.rewrite: dict[str, object] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def pre_hook(module: nn.Module, args: tuple[object, ...]) -> tuple[object, ...] | None:
            x, put_back, sample = layer_input(args[0], name)
            if self.track_grad:
                x = x.clone() if x.requires_grad else x.detach().requires_grad_()
            fn = self.rewrite.get(name)
            if fn is not None:
                x = fn(x)  # type: ignore[operator]
            if self.record:
                self.calls[name].append(x)
                self.samples[name].append(sample)
            return (put_back(x), *args[1:])

        return pre_hook

    def clear(self) -> None:
        for d in (self.calls, self.samples):
            for v in d.values():
                v.clear()

    def __enter__(self) -> InputProbe:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()


@contextmanager
def fp_pass(model: nn.Module, weights_need_grad: Mapping[str, QuantLayer] | None = None) -> Iterator[None]:
    """Fake quantization off (and the given layers' weights requiring grad) for the duration."""
    saved = [(q, int(q.fake_quant_enabled), int(q.observer_enabled)) for q in quantizers(model)]
    grads = [(layer.weight, layer.weight.requires_grad) for layer in (weights_need_grad or {}).values()]
    try:
        for q, _, _ in saved:
            q.enable_fake_quant(False)
            q.enable_observer(False)
        for w, _ in grads:
            w.requires_grad_(True)  # type: ignore[union-attr]
        yield
    finally:
        for q, fq, ob in saved:
            q.enable_fake_quant(bool(fq))
            q.enable_observer(bool(ob))
        for w, flag in grads:
            w.requires_grad_(flag)  # type: ignore[union-attr]


def group_sums(t: Tensor, g: PerGroup, keep: int, lead: int | None = None) -> Tensor:
    """Sums ``t`` over every dim but its first ``keep`` and the group axis, then over the channels of
    each group: ``[*t.shape[:keep], groups]``. ``t`` is a tensor with ``lead`` extra leading dims
    (default ``keep``) in front of the grouped tensor's own dims, on which ``g.axis`` counts."""
    axis = (keep if lead is None else lead) + g.axis
    channels = t.shape[axis]
    dims = [d for d in range(keep, t.dim()) if d != axis]
    per_channel = t.sum(dim=dims) if dims else t
    idx = unit_index(g, channels).to(t.device)
    out = per_channel.new_zeros((*per_channel.shape[:-1], g.num_units(channels)))
    return out.index_add_(per_channel.dim() - 1, idx, per_channel)


def per_sample(t: Tensor, sample: Tensor | None, samples: int) -> Tensor:
    """Sums the rows (dim 1) of ``t`` ``[P, rows, ...]`` by their sample: ``[P, samples, ...]``
    (rows already are samples when ``sample`` is None)."""
    if sample is None:
        return t
    out = t.new_zeros((t.shape[0], samples, *t.shape[2:]))
    return out.index_add_(1, sample.to(t.device), t)
