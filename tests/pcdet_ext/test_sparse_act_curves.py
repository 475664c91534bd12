"""RD curves of sparse-conv *activations* (the features of a SparseConvTensor) on the VoxelNeXt-shaped
toy: the second-order estimate against measured distortion, per-sample (not per-voxel) gradient
dot products, and a joint weight + activation allocation end to end."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

from pcdet_ext.sparse_detector import quantize_sparse_detector
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import ActPosition, calibrate, fuse_conv_bn, load_quant_config, quantize_model
from rdoq_plugins.rd import CandidateGrid, CurveSpec, TensorKind, measured_curves, second_order_curves
from rdoq_plugins.rd.probe import InputProbe, per_sample

A8 = {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 8}
QCFG: dict[str, Any] = {"w_qconfig": {**A8, "ch_axis": 0}, "a_qconfig": A8, "calibrate": 2, "recon": None}
# One submanifold 3D conv, one strided sparse 3D conv, conv_out (2D) and a 1x1 head conv.
LAYERS = ("backbone_3d.conv1.0.conv1", "backbone_3d.conv2.0.0", "backbone_3d.conv_out.0",
          "dense_head.heads_list.0.hm.0.0")
GRID = CandidateGrid((2, 4, 8), (1.0,))
SPEC = CurveSpec(kinds=(TensorKind.ACT,), act_group=8, act_grid=GRID, projections=32, kappa=0.0)


@pytest.fixture(scope="module")
def toy_setup() -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    scenes = toy.make_scenes(4, seed=3)
    batches = toy.batches_of(scenes, 2)
    model = fuse_conv_bn(toy.set_bn_statistics(toy.build_toy(seed=0, narrow=True, blocks=1), batches))
    return model, batches


def _quantized(toy_setup: tuple[torch.nn.Module, list[dict[str, Any]]]) -> tuple[torch.nn.Module, dict, list]:
    fp, batches = toy_setup
    model = copy.deepcopy(fp)
    wrapped = quantize_model(model, load_quant_config(QCFG), ActPosition.INPUT)
    calibrate(model, batches, toy.run_model)
    missing = [n for n in LAYERS if n not in wrapped]
    assert not missing, f"toy layer names changed: {missing}; quantized: {sorted(wrapped)[:8]}..."
    return model, {n: wrapped[n] for n in LAYERS}, batches


def test_probe_reads_sparse_features_and_their_samples(toy_setup) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = _quantized(toy_setup)
    with InputProbe(layers, track_grad=False) as probe:
        toy.head_outputs(model, batches[0])
        for name in LAYERS:
            (x,), (sample,) = probe.calls[name], probe.samples[name]
            assert x.dim() == 2 and sample is not None and sample.shape == (x.shape[0],)
            assert set(sample.tolist()) == {0, 1}  # two frames per batch
    t = torch.ones(3, 5, 2)
    summed = per_sample(t, torch.tensor([1, 0, 1, 1, 0]), 2)
    assert summed[:, 0].eq(2).all() and summed[:, 1].eq(3).all()


def test_sparse_act_second_order_matches_measured(toy_setup) -> None:  # type: ignore[no-untyped-def]
    model, layers, batches = _quantized(toy_setup)
    fast = second_order_curves(model, layers, batches, toy.head_outputs, SPEC, images=lambda b: b["batch_size"])
    slow = measured_curves(model, layers, batches, toy.head_outputs, SPEC, images=lambda b: b["batch_size"])
    assert set(fast) == set(slow) == {(n, TensorKind.ACT) for n in LAYERS}
    a = np.concatenate([fast[k].distortion.numpy().ravel() for k in sorted(fast)])
    b = np.concatenate([slow[k].distortion.numpy().ravel() for k in sorted(slow)])
    assert np.all(a >= 0) and np.all(b >= 0)
    corr = np.corrcoef(np.log(a + 1e-12), np.log(b + 1e-12))[0, 1]
    assert corr > 0.9, corr
    # At 8 bits (the small-error regime a second-order estimate is for) each layer's total agrees;
    # at 2 bits the relative output error passes 1 and the quadratic model overestimates it.
    for k in fast:
        ratio = float(fast[k].distortion[:, -1].sum() / slow[k].distortion[:, -1].sum())
        assert 0.6 < ratio < 1.7, (k, ratio)
    # Rates are per frame: voxels x channels of the group / frames in the batch.
    elems = fast[(LAYERS[0], TensorKind.ACT)].elements
    assert float(elems.sum()) > 0 and torch.equal(elems, slow[(LAYERS[0], TensorKind.ACT)].elements)


def test_joint_allocation_on_the_sparse_detector(toy_setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fp, batches = toy_setup
    qcfg = load_quant_config({**QCFG, "a_qconfig": {**A8, "bit": 6}, "rdoq": {
        "target": "joint", "target_rates": [3.0, 5.0], "apply_rate": 5.0, "solver": "dp", "weight_group": 8,
        "act_group": 8, "weight_bits": [2, 3, 4, 6, 8], "act_bits": [2, 3, 4, 6, 8], "weight_ratios": [1.0],
        "act_ratios": [1.0], "projections": 4}})
    model, report = quantize_sparse_detector(copy.deepcopy(fp), fp, batches, toy.run_model, toy.head_outputs, qcfg,
                                             work_dir=tmp_path, images=lambda b: b["batch_size"])
    rd = report["rdoq"]
    kinds = {k for r in rd["rates"] for k in r["kind_bits"]}
    assert {"weight", "act"} <= kinds, kinds
    for r in rd["rates"]:
        assert r["avg_bits"] <= r["target_rate"] + 1e-9
    low, high = rd["rates"]
    assert low["measured_distortion"] > high["measured_distortion"] > 0
    # The allocation is in the model: a layer's input quantizer carries per-group bits.
    bits = {n: b for n, b in rd["applied"]["layer_bits"].items() if n.endswith(":act")}
    assert bits, rd["applied"]["layer_bits"]
