"""Computing curves for a store: second-order passes give the curves of one pass, a killed run keeps
the layers it finished and the rerun computes only the others, and no NaN is stored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import rdoq_plugins.rd.layers as rd_layers
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.rd import CurveStore, TensorKind
from rdoq_plugins.rd.finite import NonFiniteError
from rdoq_plugins.rd.layers import compute_curves, layer_passes
from tests.core.rd.conftest import outputs  # type: ignore[import-not-found]

BASE = {"weight_group": 4, "act_group": 4, "weight_bits": [2, 4, 6], "weight_ratios": [1.0, 0.7],
        "act_bits": [2, 4, 8], "act_ratios": [1.0, 0.7], "projections": 2, "target_rates": [4]}


def _cfg(**kw: Any) -> RDOQConfig:
    return RDOQConfig.from_dict({**BASE, **kw})


def test_layer_passes_split_in_order() -> None:
    assert layer_passes(list("abcde"), 2) == [list("abc"), list("de")]
    assert layer_passes(list("ab"), 4) == [["a"], ["b"]]
    assert layer_passes(list("abc"), 1) == [list("abc")]


def test_passes_give_the_curves_of_one_pass(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    one, _ = compute_curves(model, layers, batches, outputs, _cfg(target="joint", passes=1), CurveStore(tmp_path, "1"))
    many, n = compute_curves(model, layers, batches, outputs, _cfg(target="joint", passes=3), CurveStore(tmp_path, "3"))
    assert n == len(one) == 2 * len(layers)
    for key, curve in one.items():
        assert torch.equal(curve.distortion, many[key].distortion), key
        assert torch.equal(curve.lo, many[key].lo) and torch.equal(curve.elements, many[key].elements)


def test_a_killed_run_keeps_its_finished_layers(quantized, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model, layers, batches = quantized
    cfg = _cfg(passes=len(layers))  # one layer per pass
    half = len(layers) // 2
    original = rd_layers.second_order_curves
    asked: list[str] = []

    def killed_at_half(model_: Any, todo: Any, *args: Any, **kw: Any) -> Any:
        if len(asked) + len(todo) > half:
            raise KeyboardInterrupt("killed")  # the run dies half-way
        asked.extend(todo)
        return original(model_, todo, *args, **kw)

    store = CurveStore(tmp_path, "k")
    monkeypatch.setattr(rd_layers, "second_order_curves", killed_at_half)
    with pytest.raises(KeyboardInterrupt):
        compute_curves(model, layers, batches, outputs, cfg, store)
    keys = [(n, TensorKind.WEIGHT) for n in layers]
    assert len(store.missing(keys)) == len(layers) - half  # the finished half is on disk
    monkeypatch.setattr(rd_layers, "second_order_curves", original)
    curves, computed = compute_curves(model, layers, batches, outputs, cfg, store)
    assert computed == len(layers) - half
    whole, _ = compute_curves(model, layers, batches, outputs, cfg, CurveStore(tmp_path, "whole"))
    assert all(torch.equal(curves[k].distortion, whole[k].distortion) for k in keys)


def test_measured_curves_resume_per_layer(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    cfg = _cfg(estimator="measured", weight_bits=[2, 4], weight_ratios=[1.0])
    store = CurveStore(tmp_path, "m")
    first = dict(list(layers.items())[:2])
    compute_curves(model, first, batches, outputs, cfg, store)
    _, computed = compute_curves(model, layers, batches, outputs, cfg, store)
    assert computed == len(layers) - 2


def test_nan_weights_stop_the_run_naming_the_layer(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    layers["conv2"].weight.data[0, 0, 0, 0] = float("nan")  # after any checkpoint check
    store = CurveStore(tmp_path, "nan")
    with pytest.raises(NonFiniteError, match=r"conv2\.weight holds 1 non-finite"):
        compute_curves(model, layers, batches, outputs, _cfg(), store)
    assert not store.dir.exists()


def test_nan_distortion_stops_the_run_naming_the_layer(quantized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized

    def inf_outputs(m: Any, b: Any) -> list[Any]:
        return [y * float("inf") for y in outputs(m, b)]  # an overflowing target: infinite sensitivities

    store = CurveStore(tmp_path, "inf")
    with pytest.raises(NonFiniteError, match=r"weight curve of layer conv1 has \d+ non-finite distortion"):
        compute_curves(model, layers, batches, inf_outputs, _cfg(passes=1), store)
    assert not store.dir.exists()
