"""Which layers an RDOQ allocation covers, the curves it needs, and computing the missing ones
(second-order or measured; Wang et al., "RDO-Q", ECCV 2022)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from rdoq_plugins.config import QuantConfig
from rdoq_plugins.config.rdoq import Estimator, RDOQConfig, Target
from rdoq_plugins.modules.level_quantizer import LevelQuantizer
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd.candidates import CandidateGrid
from rdoq_plugins.rd.curve import LayerCurve, TensorKind
from rdoq_plugins.rd.finite import check_curve_finite, check_model_finite
from rdoq_plugins.rd.measured import measured_curves
from rdoq_plugins.rd.second_order import second_order_curves
from rdoq_plugins.rd.spec import CurveSpec
from rdoq_plugins.rd.store import CurveStore

KINDS: dict[Target, tuple[TensorKind, ...]] = {
    Target.WEIGHT: (TensorKind.WEIGHT,),
    Target.ACT: (TensorKind.ACT,),
    Target.JOINT: (TensorKind.WEIGHT, TensorKind.ACT),
    Target.BOTH: (TensorKind.WEIGHT, TensorKind.ACT),
}
Outputs = Callable[[nn.Module, Any], Sequence[Tensor]]


def curve_spec(cfg: RDOQConfig) -> CurveSpec:
    """The curve settings of an ``rdoq`` config section."""
    return CurveSpec(kinds=KINDS[cfg.target], weight_group=cfg.weight_group, act_group=cfg.act_group,
                     weight_grid=CandidateGrid(cfg.weight_bits, cfg.weight_ratios),
                     act_grid=CandidateGrid(cfg.act_bits, cfg.act_ratios),
                     projections=cfg.projections, kappa=cfg.kappa, seed=cfg.seed)


def per_level_input(layer: QuantLayer) -> bool:
    """Whether ``layer`` quantizes its input per pyramid level (:class:`LevelQuantizer`): such inputs
    keep their uniform bits, one step per level, and get no activation curve."""
    return isinstance(layer.input_quantizer, LevelQuantizer)


def rd_layers(layers: Mapping[str, QuantLayer], qcfg: QuantConfig) -> dict[str, QuantLayer]:
    """The layers the allocation covers: quantized layers whose allocated tensors (weights and / or
    inputs) are quantized at the default bit-width. A layer whose override sets other bits for an
    allocated kind (e.g. an 8-bit first conv) keeps them; overriding an observer does not matter.
    With activations allocated, a per-level input (:func:`per_level_input`) keeps its uniform bits;
    the layer stays in for its weights, if they are allocated too."""
    assert qcfg.rdoq is not None
    kinds = KINDS[qcfg.rdoq.target]
    out = {}
    for name, layer in layers.items():
        lq = qcfg.for_layer(name)
        if lq is None:
            continue
        w, a = lq.w_qconfig, lq.a_qconfig
        if TensorKind.WEIGHT in kinds and (layer.weight_quantizer is None or w is None or w.bit != qcfg.w_qconfig.bit):
            continue
        if TensorKind.ACT in kinds and (layer.input_quantizer is None or a is None or a.bit != qcfg.a_qconfig.bit):
            continue
        if kinds == (TensorKind.ACT,) and per_level_input(layer):
            continue
        out[name] = layer
    if not out:
        raise ValueError("rdoq: no quantized layer is left to allocate bits to (all are overridden or FP)")
    return out


def curve_keys(layers: Mapping[str, QuantLayer], target: Target) -> list[tuple[str, TensorKind]]:
    """The (layer, kind) curves an allocation of ``target`` over :func:`rd_layers` needs, kind by kind."""
    return [(n, k) for k in KINDS[target] for n, layer in layers.items()
            if not (k is TensorKind.ACT and per_level_input(layer))]


def layer_passes(names: Sequence[str], passes: int) -> list[list[str]]:
    """``names`` split into at most ``passes`` runs of consecutive layers of near-equal length."""
    size = max(1, math.ceil(len(names) / max(1, passes)))
    return [list(names[i:i + size]) for i in range(0, len(names), size)]


def compute_curves(
    model: nn.Module,
    layers: Mapping[str, QuantLayer],
    batches: Sequence[Any],
    outputs: Outputs,
    cfg: RDOQConfig,
    store: CurveStore,
    images: Callable[[Any], int] = lambda b: 1,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    reduce_mean: Callable[[Tensor], Tensor] | None = None,
    writer: bool = True,
) -> tuple[dict[tuple[str, TensorKind], LayerCurve], int]:
    """Every curve the config needs, computing only those not in ``store`` (``writer``: this
    process saves them). Returns the curves and how many were computed now.

    Curves are stored as they are done, so a killed run resumes with the missing layers: the
    measured estimator stores each layer's curve, the second-order one splits each kind's layers
    into ``cfg.passes`` runs (one pass over the batches each; the projections restart from the
    seed in every pass, so the curves are those of a single pass) and stores each run's curves.
    Non-finite weights or curves raise :class:`NonFiniteError` naming the layer."""
    keys = curve_keys(layers, cfg.target)
    missing = store.missing(keys)
    if missing:
        check_model_finite(model)

    def save(curve: LayerCurve) -> None:
        check_curve_finite(curve)
        if writer:
            store.save(curve)

    for kind in dict.fromkeys(k for _, k in missing):  # one pass per kind: each over its own layers
        todo = {n: layers[n] for n, k in missing if k is kind}
        spec = replace(curve_spec(cfg), kinds=(kind,))
        if cfg.estimator is not Estimator.SECOND_ORDER:
            measured_curves(model, todo, batches, outputs, spec, images, progress, reduce_mean, on_curve=save)
            continue
        for names in layer_passes(list(todo), cfg.passes):
            part = {n: todo[n] for n in names}
            for curve in second_order_curves(model, part, batches, outputs, spec, images, progress,
                                             reduce_mean).values():
                save(curve)
    return {key: store.load(*key) for key in keys}, len(missing)
