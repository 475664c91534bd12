"""Curves on disk: exact round trips, resuming from what is there, and the folder's hash."""
from __future__ import annotations

from pathlib import Path

import torch

from rdoq_plugins.rd import (
    CandidateGrid,
    CurveSpec,
    CurveStore,
    LayerCurve,
    TensorKind,
    second_order_curves,
)
from tests.core.rd.conftest import outputs, synthetic_curve  # type: ignore[import-not-found]

GRID = CandidateGrid((2, 4, 6, 8), (1.0, 0.7))


def _same(a: LayerCurve, b: LayerCurve) -> bool:
    tensors = ("elements", "lo", "hi", "distortion")
    return (a.layer, a.kind, a.group, a.grid) == (b.layer, b.kind, b.group, b.grid) and all(
        torch.equal(getattr(a, t), getattr(b, t)) and getattr(a, t).dtype == getattr(b, t).dtype for t in tensors)


def test_store_resumes(quantized, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = quantized
    spec = CurveSpec(weight_group=4, weight_grid=GRID, projections=1)
    curves = second_order_curves(model, layers, batches, outputs, spec)
    store = CurveStore(tmp_path, "abc")
    store.save(curves[("conv1", TensorKind.WEIGHT)])
    keys = [(n, k) for k in spec.kinds for n in layers]
    assert store.missing(keys) == [(n, TensorKind.WEIGHT) for n in layers if n != "conv1"]
    back = store.load("conv1", TensorKind.WEIGHT)
    assert torch.equal(back.distortion, curves[("conv1", TensorKind.WEIGHT)].distortion)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = CurveStore(tmp_path, "k")
    curves = [synthetic_curve("neck.lateral/0:conv", TensorKind.WEIGHT, (0, 3, 5), groups=3, ratios=(1.0, 0.8, 0.6)),
              synthetic_curve("neck.lateral/0:conv", TensorKind.ACT, (2, 4), groups=5, seed=1)]
    for c in curves:
        store.save(c)
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["neck.lateral_0_conv.act.pth",
                                                                  "neck.lateral_0_conv.weight.pth"]
    for c in curves:
        assert store.has(c.layer, c.kind) and _same(store.load(c.layer, c.kind), c)


def test_saving_again_replaces_the_curve(tmp_path: Path) -> None:
    store = CurveStore(tmp_path, "k")
    first, second = (synthetic_curve("fc", TensorKind.WEIGHT, (2, 4), groups=2, seed=s) for s in (0, 1))
    store.save(first)
    store.save(second)
    assert _same(store.load("fc", TensorKind.WEIGHT), second) and not _same(second, first)
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["fc.weight.pth"]


def test_missing_keeps_the_order_of_the_keys(tmp_path: Path) -> None:
    store = CurveStore(tmp_path, "k")
    keys = [("b", TensorKind.ACT), ("a", TensorKind.WEIGHT), ("b", TensorKind.WEIGHT), ("a", TensorKind.ACT)]
    assert store.missing(keys) == keys  # the folder does not exist yet
    store.save(synthetic_curve("b", TensorKind.WEIGHT, (2, 4), groups=2))
    assert store.missing(keys) == [keys[0], keys[1], keys[3]]
    assert not CurveStore(tmp_path, "other").has("b", TensorKind.WEIGHT)
