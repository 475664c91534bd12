"""``pcdet_ext.sparse_detector`` end to end on the VoxelNeXt-shaped toy, without OpenPCDet:
:func:`quantize_sparse_detector`'s calibration, second-order RD curves, DP allocation at a 4-bit
weight target with the additivity check, QDrop reconstruction of every unit, head-output SQNR
against FP, and a strict quantized checkpoint round trip (``save_quantized`` / ``load_quantized``)."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

import pcdet_ext
from pcdet_ext.sparse_detector import load_quantized, quantize_sparse_detector, save_quantized
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import QuantConfig, fuse_conv_bn, load_quant_config, set_quant_state
from rdoq_plugins.granularity import PerGroup
from rdoq_plugins.modules import quantizers
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundingState
from rdoq_plugins.rd.layers import rd_layers

RATES = [2.0, 3.0, 4.0, 6.0]
ITERS = 4
CONFIG: dict[str, Any] = {
    "w_qconfig": {"quantizer": "AdaRoundFakeQuantize", "observer": "MSEObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "AvgMSEFastObserver", "bit": 8},
    "calibrate": 4,
    "recon": {"iters": ITERS, "batch_size": 1},
    "rdoq": {"target": "weight", "target_rates": RATES, "apply_rate": 4, "solver": "dp",
             "weight_bits": [1, 2, 3, 4, 5, 6, 8], "weight_ratios": [1.0, 0.8, 0.6], "weight_group": 8,
             "projections": 2},
    # As QDrop: the first layer (raw point features in) stays at 8 bits.
    "overrides": {"backbone_3d.conv_input.0": {"w_qconfig": {"bit": 8}, "a_qconfig": {"bit": 8}}},
}


def _fp_model(seed: int, batches: list[dict] | None) -> torch.nn.Module:
    model = toy.build_toy(seed=seed, narrow=True, blocks=1)
    if batches is not None:
        toy.set_bn_statistics(model, batches)
    return fuse_conv_bn(model)


@pytest.fixture(scope="module")
def ptq(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pcdet_ext.apply_cpu_patches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scenes = toy.make_scenes(6, seed=5)
        calib, held_out = toy.batches_of(scenes[:4], 2), toy.batches_of(scenes[4:], 1)
        fp = _fp_model(0, calib)
        qcfg = load_quant_config(CONFIG)
        model, report = quantize_sparse_detector(copy.deepcopy(fp), fp, calib, toy.run_model, toy.head_outputs, qcfg,
                                                 work_dir=tmp_path_factory.mktemp("work"),
                                                 images=lambda b: b["batch_size"])
    finally:
        torch.set_num_threads(threads)
    return {"fp": fp, "model": model, "report": report, "qcfg": qcfg, "calib": calib, "held_out": held_out}


def _sqnr_db(fp: list[torch.Tensor], q: list[torch.Tensor]) -> list[float]:
    return [10 * math.log10(float(a.double().pow(2).sum()) / max(float((a.double() - b.double()).pow(2).sum()), 1e-30))
            for a, b in zip(fp, q)]


def _outputs(model: torch.nn.Module, batches: list[dict]) -> list[list[torch.Tensor]]:
    with torch.no_grad():
        return [toy.head_outputs(model, b) for b in batches]


def test_rd_allocation_meets_the_4_bit_weight_target(ptq: dict[str, Any]) -> None:
    rd = ptq["report"]["rdoq"]
    model, qcfg = ptq["model"], ptq["qcfg"]
    layers = rd_layers({n: m for n, m in model.named_modules() if hasattr(m, "weight_quantizer")}, qcfg)
    assert "backbone_3d.conv_input.0" not in layers  # the 8-bit override is not allocated
    assert rd["curves"]["computed"] == len(layers) and rd["curves"]["images"] == 4
    assert [r["target_rate"] for r in rd["rates"]] == RATES
    for r in rd["rates"]:
        assert r["target_rate"] - 0.25 <= r["avg_bits"] <= r["target_rate"] + 1e-9
    assert rd["applied"]["avg_bits"] == pytest.approx(rd["rates"][2]["avg_bits"])
    # The applied allocation is on the model: per-group grids with the chosen bits.
    elems = bits = 0.0
    for layer in layers.values():
        q = layer.weight_quantizer
        assert isinstance(q.granularity, PerGroup) and q.granularity.size == 8
        assert set(q.bits.tolist()) <= set(CONFIG["rdoq"]["weight_bits"])
        per_group = layer.weight.numel() / layer.weight.shape[0] * torch.bincount(
            torch.arange(layer.weight.shape[0]) // 8).double()
        bits += float((q.bits.double() * per_group).sum())
        elems += float(per_group.sum())
    assert bits / elems == pytest.approx(rd["applied"]["avg_bits"], rel=1e-6)
    assert 3.75 <= bits / elems <= 4.0 + 1e-9
    assert 3.75 <= ptq["report"]["bits"]["weight_avg"] <= 4.3  # + the 8-bit first layer


def test_additivity_predicted_vs_measured(ptq: dict[str, Any]) -> None:
    add = ptq["report"]["rdoq"]["additivity"]
    predicted, measured = np.array(add["predicted"]), np.array(add["measured"])
    assert add["rates"] == RATES and len(measured) == len(RATES) and (measured > 0).all()
    # Fewer bits, more distortion; the sum of the per-group predictions follows the measurement.
    assert (np.diff(predicted) < 0).all() and (np.diff(measured) < 0).all()
    assert add["pearson"] > 0.9
    assert np.corrcoef(np.log(predicted), np.log(measured))[0, 1] > 0.9
    print(f"\nadditivity: predicted {predicted.round(4).tolist()} measured {measured.round(4).tolist()} "
          f"pearson {add['pearson']:.4f}")


def test_every_unit_reconstructed_with_hardened_rounding(ptq: dict[str, Any]) -> None:
    recon, model = ptq["report"]["recon_units"], ptq["model"]
    kinds = [v["kind"] for v in recon.values()]
    assert kinds.count("block") == 6 and kinds.count("downsample") == 5 and kinds.count("head_branch") == 10
    assert list(recon)[:2] == ["backbone_3d.conv_input", "backbone_3d.conv1.0"]
    assert list(recon)[-1] == "dense_head.heads_list.1.hm" and len(recon) == 24
    assert all(v["iters"] == ITERS and math.isfinite(v["final_loss"]) for v in recon.values())
    rounding = [q for q in quantizers(model, weight=True) if isinstance(q, AdaRoundFakeQuantize)]
    assert len(rounding) == ptq["report"]["quantized_layers"]
    for q in rounding:
        assert q.state is RoundingState.HARD and q.alpha.numel() > 0 and not q.alpha.requires_grad
    assert all(bool(q.fake_quant_enabled) and not bool(q.observer_enabled) for q in quantizers(model))
    assert not model.training


def test_head_output_sqnr_against_fp(ptq: dict[str, Any]) -> None:
    fp_out = _outputs(ptq["fp"], ptq["held_out"])
    q_out = _outputs(ptq["model"], ptq["held_out"])
    sqnr = np.array([_sqnr_db(f, q) for f, q in zip(fp_out, q_out)])  # [batch, output]
    assert sqnr.shape == (2, 10) and np.isfinite(sqnr).all()
    assert sqnr.min() > 0.0 and sqnr.mean() > 5.0  # quantization error below the signal everywhere
    assert sqnr.max() < 60.0  # and the model is really quantized
    # Weight quantization adds error on top of the activations' alone.
    model = ptq["model"]
    set_quant_state(model, weight=False, act=True)
    try:
        act_only = np.array([_sqnr_db(f, q) for f, q in zip(fp_out, _outputs(model, ptq["held_out"]))])
    finally:
        set_quant_state(model, weight=True, act=True)
    assert act_only.mean() > sqnr.mean()
    print(f"\nhead-output SQNR (dB): W4A8 mean {sqnr.mean():.2f} (min {sqnr.min():.2f}, max {sqnr.max():.2f}); "
          f"A8 only {act_only.mean():.2f}")


def test_quantized_checkpoint_round_trip_is_strict(ptq: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "quantized.pth"
    save_quantized(ptq["model"], ptq["qcfg"], path, meta={"model": "voxelnext-toy"})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and values only
    assert raw["meta"]["model"] == "voxelnext-toy"
    fresh, qcfg = load_quantized(_fp_model(seed=123, batches=None), path)  # other weights, no calibration
    assert qcfg == ptq["qcfg"]
    assert not any(bool(q.observer_enabled) for q in quantizers(fresh))
    for a, b in zip(_outputs(ptq["model"], ptq["held_out"]), _outputs(fresh, ptq["held_out"])):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    # Any key mismatch is an error.
    state = raw["state_dict"]
    key = next(k for k in state if k.endswith("weight_quantizer.alpha"))
    for broken in ({(key.replace("alpha", "alfa") if k == key else k): v for k, v in state.items()},
                   {k: v for k, v in state.items() if k != key}):
        bad = tmp_path / "broken.pth"
        torch.save({**raw, "state_dict": broken}, bad)
        with pytest.raises(KeyError, match="does not match"):
            load_quantized(_fp_model(seed=1, batches=None), bad)
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="not a quantized"):
        load_quantized(_fp_model(seed=1, batches=None), tmp_path / "plain.pth")
    assert isinstance(qcfg, QuantConfig)


def test_recon_exclude_leaves_the_head_branches_at_nearest_rounding(ptq: dict[str, Any]) -> None:
    config = {k: v for k, v in CONFIG.items() if k != "rdoq"}
    qcfg = load_quant_config({**config, "recon": {"iters": 2, "batch_size": 1, "exclude": [r"dense_head\..*"]}})
    model, report = quantize_sparse_detector(copy.deepcopy(ptq["fp"]), ptq["fp"], ptq["calib"], toy.run_model,
                                             toy.head_outputs, qcfg, images=lambda b: b["batch_size"])
    assert report["recon_units"] and not any(n.startswith("dense_head.") for n in report["recon_units"])
    for name, module in model.named_modules():
        if isinstance(module, AdaRoundFakeQuantize):
            expected = RoundingState.NEAREST if name.startswith("dense_head.") else RoundingState.HARD
            assert module.state is expected, name
