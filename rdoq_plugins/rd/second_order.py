"""Fast RD curves from gradients: no forward pass per candidate.

For a perturbation ``Δ`` of one group (its quantization error), the output distortion is, to second
order, ``D(Δ) ≈ ||JΔ||² = E_v[(g_v·Δ)²]`` with ``g_v = Jᵀv`` the gradient of the random projection
``vᵀy`` (:mod:`rdoq_plugins.rd.target`). RDOQ's estimate ``½κ||Δ||² + (1/2N) Σ_k (g_k·Δ)²``
(Wang et al., RDO-Q, ECCV 2022) has this form; here the gradients are unbiased per batch, and the
isotropic ``½κ||Δ||²`` term is kept for weights. A few backward passes per batch then price every
(group, bits, ratio) candidate analytically.

Activations: the quantization error of a layer input differs per sample, so its dot product with
the gradient is taken per sample (the first dim of the input; RoIs for RoI heads) and summed over
the calls of a shared layer before squaring. RDOQ's public code keeps only the first sample's
gradient of each batch. For a sparse input the samples are those of its voxels (``indices[:, 0]``),
so the dot product sums over every voxel of a sample, not voxel by voxel.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.candidates import group_ranges, quantize_groups
from rdoq_plugins.rd.curve import LayerCurve, TensorKind
from rdoq_plugins.rd.probe import InputProbe, fp_pass, group_sums, per_sample
from rdoq_plugins.rd.ranges import act_ranges
from rdoq_plugins.rd.spec import CurveSpec
from rdoq_plugins.rd.target import projection_loss

B = TypeVar("B")
Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]


class UnseenLayerError(RuntimeError):
    """A quantized layer whose quantization the distortion target cannot see."""


def _grads(loss: Tensor, tensors: Sequence[Tensor], names: Sequence[str], retain: bool) -> list[Tensor]:
    grads = torch.autograd.grad(loss, list(tensors), retain_graph=retain, allow_unused=True)
    unseen = [n for n, g in zip(names, grads) if g is None]
    if unseen:
        raise UnseenLayerError(
            f"the distortion target does not depend on {len(unseen)} quantized tensors "
            f"(e.g. {', '.join(unseen[:3])}); add the outputs they feed to the target or leave them FP")
    return list(grads)  # type: ignore[arg-type]


def second_order_curves(
    model: nn.Module,
    layers: Mapping[str, QuantLayer],
    batches: Sequence[B],
    outputs: Outputs,
    spec: CurveSpec,
    images: Callable[[B], int] = lambda b: 1,
    progress: Callable[[Iterable[B]], Iterable[B]] | None = None,
    reduce_mean: Callable[[Tensor], Tensor] | None = None,
) -> dict[tuple[str, TensorKind], LayerCurve]:
    """RD curves of every requested kind for ``layers`` of ``model`` (fake quantization is off).

    Args:
        model: the quantized model (its quantizers are switched off during the pass).
        layers: the layers to take curves of, by module name.
        batches: calibration batches.
        outputs: ``outputs(model, batch)``: the distortion target's output tensors.
        spec: groups, candidates, projections.
        images: images in a batch (activation rates are per image).
        progress: optional progress-bar wrapper over the batches.
        reduce_mean: averages a tensor over the ranks of a distributed run (each rank passes its
            own batches; the curves are then those of all batches).
    """
    kinds = spec.kinds
    with_w, with_a = TensorKind.WEIGHT in kinds, TensorKind.ACT in kinds
    a_lo, a_hi, a_elems = (act_ranges(model, layers, batches, outputs, spec, images, reduce_mean)
                           if with_a else ({}, {}, {}))
    gen = torch.Generator().manual_seed(spec.seed)
    wg, ag = spec.group(TensorKind.WEIGHT), spec.group(TensorKind.ACT)
    w_ranges = {n: group_ranges(layer.weight, wg) for n, layer in layers.items()} if with_w else {}
    w_acc = {n: torch.zeros(len(spec.weight_grid.bits), len(spec.weight_grid.ratios), lo.numel(), dtype=torch.float64)
             for n, (lo, _) in w_ranges.items()}
    a_acc = {n: torch.zeros(len(spec.act_grid.bits), len(spec.act_grid.ratios), lo.numel(), dtype=torch.float64)
             for n, lo in a_lo.items()}
    count = 0
    with fp_pass(model, layers if with_w else None), InputProbe(layers if with_a else {}, track_grad=True) as probe:
        for batch in progress(batches) if progress is not None else batches:
            probe.clear()
            outs = outputs(model, batch)
            names = (list(layers) if with_w else []) + [f"{n}#{i}" for n, xs in probe.calls.items()
                                                       for i in range(len(xs))]
            tensors = ([layers[n].weight for n in layers] if with_w else []) + [x for xs in probe.calls.values()
                                                                              for x in xs]
            per_proj = [_grads(projection_loss(outs, gen), tensors, names, p < spec.projections - 1)
                        for p in range(spec.projections)]
            nw = len(layers) if with_w else 0
            for i, name in enumerate(layers if with_w else []):
                g = torch.stack([grads[i] for grads in per_proj])  # [P, *weight]
                _accumulate_weight(w_acc[name], layers[name].weight.detach(), g, wg, *w_ranges[name], spec)
            offset = nw
            for name, xs in probe.calls.items():
                gs = [torch.stack([grads[offset + j] for grads in per_proj]) for j in range(len(xs))]
                offset += len(xs)
                _accumulate_act(a_acc[name], [x.detach() for x in xs], gs, probe.samples[name], ag, a_lo[name],
                                a_hi[name], spec)
            count += spec.projections
    curves: dict[tuple[str, TensorKind], LayerCurve] = {}
    for name, acc in w_acc.items():
        weight = layers[name].weight.detach()
        lo, hi = w_ranges[name]
        iso = _isotropic(weight, wg, lo, hi, spec)
        dist = _mean(acc / count, reduce_mean).add(iso).permute(2, 0, 1).float()
        elems = group_sums(torch.ones_like(weight), wg, 0).double()
        curves[(name, TensorKind.WEIGHT)] = LayerCurve(name, TensorKind.WEIGHT, wg, spec.weight_grid, elems, lo, hi, dist)
    for name, acc in a_acc.items():
        dist = _mean(acc / count, reduce_mean).permute(2, 0, 1).float()
        curves[(name, TensorKind.ACT)] = LayerCurve(name, TensorKind.ACT, ag, spec.act_grid, a_elems[name],
                                                     a_lo[name], a_hi[name], dist)
    return curves


def _mean(t: Tensor, reduce_mean: Callable[[Tensor], Tensor] | None) -> Tensor:
    return t if reduce_mean is None else reduce_mean(t)


def _accumulate_weight(acc: Tensor, weight: Tensor, g: Tensor, group: Any, lo: Tensor, hi: Tensor,
                       spec: CurveSpec) -> None:
    """``acc[bits, ratio, group] += Σ_p (g_p · Δ)²`` over the group's elements."""
    for i, j, b, r in spec.weight_grid:
        delta = quantize_groups(weight, group, lo, hi, b, r) - weight
        dots = group_sums(g * delta, group, 1)  # [P, groups]
        acc[i, j] += dots.double().pow(2).sum(0)


def _accumulate_act(acc: Tensor, xs: list[Tensor], gs: list[Tensor], samples: Sequence[Tensor | None], group: Any,
                    lo: Tensor, hi: Tensor, spec: CurveSpec) -> None:
    """``acc[bits, ratio, group] += Σ_p Σ_n (Σ_calls g_pn · Δ_n)²`` (per sample ``n``; a sparse input's
    rows are voxels, summed by their sample first)."""
    n = max(int(s.max()) + 1 if s is not None and s.numel() else x.shape[0] for x, s in zip(xs, samples))
    for i, j, b, r in spec.act_grid:
        total: Tensor | None = None
        for x, g, s in zip(xs, gs, samples):
            delta = quantize_groups(x, group, lo, hi, b, r) - x
            dots = per_sample(group_sums(g * delta, group, keep=2, lead=1), s, n)  # [P, N, groups]
            total = dots if total is None else total + dots
        assert total is not None
        acc[i, j] += total.double().pow(2).sum((0, 1))


def _isotropic(weight: Tensor, group: Any, lo: Tensor, hi: Tensor, spec: CurveSpec) -> Tensor:
    """``½κ||Δ||²`` per (bits, ratio, group)."""
    out = torch.zeros(len(spec.weight_grid.bits), len(spec.weight_grid.ratios), lo.numel(), dtype=torch.float64)
    if spec.kappa:
        for i, j, b, r in spec.weight_grid:
            delta = quantize_groups(weight, group, lo, hi, b, r) - weight
            out[i, j] = 0.5 * spec.kappa * group_sums(delta.pow(2), group, 0).double()
    return out
