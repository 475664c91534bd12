"""Issue 17, item 3: a quantized VoxelNeXt-shaped detector exported to weights.packed + manifest.json
(``pcdet_ext.export``, ``tools/pcdet/export.py``) and rebuilt from them bit-exactly: identical state,
identical head outputs; the manifest carries each spconv layer's kind, geometry, bits, steps."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext.export import MANIFEST, export_sparse, load_exported, read_manifest, same_state
from pcdet_ext.sparse_detector import quantize_sparse_detector
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import fuse_conv_bn, load_quant_config
from rdoq_plugins.errors import InputError
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundingState
from tests.pcdet_ext.conftest import tool_argv, tool_fails, toy_with_bn_stats

CONFIG: dict[str, Any] = {
    "w_qconfig": {"quantizer": "AdaRoundFakeQuantize", "observer": "MSEObserver", "bit": 4, "ch_axis": 0,
                  "group_size": 4},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "AvgMinMaxObserver", "bit": 8},
    "calibrate": 2,
    "recon": {"iters": 2, "batch_size": 1},
    "overrides": {"backbone_3d.conv_input.0": {"w_qconfig": {"bit": 8}},
                  "re:dense_head\\..*": {"a_qconfig": {"bit": 4}}},
}
MIXED = [0, 2, 3, 4, 5, 8, 6, 1]  # bits cycled over the weight groups: pruned, sub-container, int8


@pytest.fixture(scope="module")
def quantized() -> dict[str, Any]:
    pcdet_ext.apply_cpu_patches()  # module-scoped: before the autouse fixture of conftest.py
    calib = toy.batches_of(toy.make_scenes(2, seed=3), 1)
    fp = fuse_conv_bn(toy_with_bn_stats(seed=0))
    qcfg = load_quant_config(CONFIG)
    model, _ = quantize_sparse_detector(copy.deepcopy(fp), fp, calib, toy.run_model, toy.head_outputs, qcfg)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, QuantLayer) and m.weight_quantizer is not None and name != "backbone_3d.conv_input.0":
                units = m.weight_quantizer.bits.numel()
                m.weight_quantizer.set_bits(torch.tensor([MIXED[(i + len(name)) % len(MIXED)] for i in range(units)]))
    return {"model": model.eval(), "qcfg": qcfg, "held_out": toy.batches_of(toy.make_scenes(2, seed=11), 2)}


def _fresh(seed: int = 7) -> torch.nn.Module:
    return fuse_conv_bn(toy_with_bn_stats(seed=seed))  # other weights: only the structure is reused


def test_export_reloads_bit_exactly(quantized: dict[str, Any], tmp_path: Path) -> None:
    model = quantized["model"]
    hard = [m for m in model.modules() if isinstance(m, AdaRoundFakeQuantize)]
    assert hard and all(q.state is RoundingState.HARD for q in hard)  # AdaRound's learned rounding is exported
    info = export_sparse(model, quantized["qcfg"], tmp_path, {"note": "toy"})
    assert {p.name for p in tmp_path.iterdir()} == {"weights.packed", MANIFEST}
    assert info["predicted"] <= info["packed"] <= info["predicted"] * 1.01 + info["header"]
    fresh = _fresh()
    assert same_state(model, fresh)  # the comparison sees a different model
    rebuilt, qcfg = load_exported(fresh, tmp_path)
    assert same_state(model, rebuilt) == []
    assert qcfg.to_dict() == quantized["qcfg"].to_dict()
    with torch.no_grad():
        for batch in quantized["held_out"]:
            a, b = toy.head_outputs(model, batch), toy.head_outputs(rebuilt, batch)
            assert len(a) == 10 and all(torch.equal(x, y) for x, y in zip(a, b))


def test_manifest_describes_every_spconv_layer(quantized: dict[str, Any], tmp_path: Path) -> None:
    model = quantized["model"]
    export_sparse(model, quantized["qcfg"], tmp_path)
    manifest = read_manifest(tmp_path)
    layers = {e["name"]: e for e in manifest["layers"]}
    modules = {n: m for n, m in model.named_modules() if isinstance(m, QuantLayer)}
    assert layers.keys() == modules.keys()
    assert {e["kind"] for e in layers.values()} == {"SubMConv3d", "SparseConv3d", "SparseConv2d", "SubMConv2d"}
    down = layers["backbone_3d.conv2.0.0"]
    assert (down["kind"], down["kernel_size"], down["stride"], down["padding"]) == ("SparseConv3d", [3] * 3, [2] * 3,
                                                                                   [1] * 3)
    for name, m in modules.items():
        e = layers[name]
        assert e["kernel_size"] == list(m.kernel_size) and e["dilation"] == list(m.dilation)
        assert e["indice_key"] == m.indice_key and e["subm"] == m.subm
        wq, aq = e["weight"]["quant"], e["input_quant"]
        assert wq["bits"] == m.weight_quantizer.bits.tolist()
        # Steps are written exactly: the JSON numbers are the float32 values.
        assert torch.equal(torch.tensor(wq["scale"], dtype=torch.float32), m.weight_quantizer.scale.detach())
        assert torch.equal(torch.tensor(aq["scale"], dtype=torch.float32), m.input_quantizer.scale.detach())
        assert aq["bits"] == ([4] if name.startswith("dense_head.") else [8])
    assert layers["backbone_3d.conv1.0.conv1"]["weight"]["quant"]["granularity"] == {"kind": "per_group", "axis": 0,
                                                                                       "size": 4}
    assert 0 in {b for e in layers.values() for b in e["weight"]["quant"]["bits"]}


def test_a_manifest_that_does_not_fit_the_model_is_refused(quantized: dict[str, Any], tmp_path: Path) -> None:
    export_sparse(quantized["model"], quantized["qcfg"], tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["layers"][1]["kernel_size"] = [5, 5, 5]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the manifest"):
        load_exported(_fresh(), tmp_path)


def test_export_tool_on_a_quantized_checkpoint(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    from tools.pcdet import export as export_tool
    from tools.pcdet import recon as recon_tool

    work = tmp_path / "work"
    recon_tool.main(tool_argv(fake_openpcdet, work, "qdrop1"))
    out = tmp_path / "export"
    argv = ["--cfg_file", fake_openpcdet["cfg"], "--ckpt", str(work / "quantized.pth"), "--out", str(out),
            "--workers", "0", "--batch_size", "2", "--check"]
    report = export_tool.main(argv)
    assert report["check"] == {"state_keys_differing": [], "batches": 2, "outputs_identical": True}
    assert report["layers"] == len(read_manifest(out)["layers"]) > 20
    assert read_manifest(out)["meta"]["checkpoint"] == str(work / "quantized.pth")


def test_export_tool_refuses_an_fp_checkpoint(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    from tools.pcdet import export as export_tool

    out = tmp_path / "export"
    argv = ["--cfg_file", fake_openpcdet["cfg"], "--ckpt", str(fake_openpcdet["ckpt"]), "--out", str(out),
            "--workers", "0"]
    tool_fails(export_tool.main, argv, InputError, "is not a quantized checkpoint: quantize first", out)
