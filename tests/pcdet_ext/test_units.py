"""Reconstruction units of VoxelNeXt-shaped models (``pcdet_ext.units``): which modules are units,
of which kind, in forward order, recognized by class name and structure."""
from __future__ import annotations

import pytest
from torch import nn

spconv = pytest.importorskip("spconv.pytorch")

from pcdet_ext.sparse_detector import quantize_sparse_model
from pcdet_ext.units import UnitKind, sparse_units
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import QuantLayer, fuse_conv_bn, load_quant_config
from rdoq_plugins.recon import call_order

MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 8},
}
BRANCHES = ("center", "center_z", "dim", "rot", "hm")


def _expected_units(blocks: int) -> dict[str, UnitKind]:
    units = {"backbone_3d.conv_input": UnitKind.CONV}
    units.update({f"backbone_3d.conv1.{j}": UnitKind.BLOCK for j in range(blocks)})
    for i in range(2, 7):
        units[f"backbone_3d.conv{i}.0"] = UnitKind.DOWNSAMPLE
        units.update({f"backbone_3d.conv{i}.{j}": UnitKind.BLOCK for j in range(1, blocks + 1)})
    units["backbone_3d.conv_out"] = UnitKind.CONV
    units["backbone_3d.shared_conv"] = UnitKind.CONV
    units.update({f"dense_head.heads_list.{h}.{b}": UnitKind.HEAD_BRANCH for h in range(2) for b in BRANCHES})
    return units


def test_units_of_the_voxelnext_shaped_toy(batches: list[dict]) -> None:
    model = fuse_conv_bn(toy.build_toy())
    quantize_sparse_model(model, load_quant_config(MINMAX))
    units = sparse_units(model)
    assert units == _expected_units(2)
    assert len(units) == 1 + 2 + 5 * 3 + 2 + 10
    layers = {n for n, m in model.named_modules() if isinstance(m, QuantLayer)}
    inside = [n for n in layers for u in units if n.startswith(u + ".")]
    assert sorted(inside) == sorted(layers)  # every quantized layer in exactly one unit
    small = quantize_sparse_model(fuse_conv_bn(toy.build_toy(narrow=True, blocks=1)), load_quant_config(MINMAX))
    assert small


def test_units_skip_fp_parts_and_follow_forward_order(batches: list[dict]) -> None:
    model = fuse_conv_bn(toy.build_toy(narrow=True, blocks=1))
    cfg = load_quant_config({**MINMAX, "overrides": {"re:dense_head\\.heads_list\\.1\\..*": None}})
    quantize_sparse_model(model, cfg)
    units = sparse_units(model)
    expected = {k: v for k, v in _expected_units(1).items() if not k.startswith("dense_head.heads_list.1.")}
    assert units == expected
    assert call_order(model, list(units), batches[0], toy.run_model) == list(expected)


class SparseBasicBlock(spconv.SparseModule):
    """A look-alike with OpenPCDet's class name (not the toy's class)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv2d(c, c, 3, padding=1, indice_key="r")
        self.conv2 = spconv.SubMConv2d(c, c, 3, padding=1, indice_key="r")

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.conv2(self.conv1(x))
        return out.replace_feature(out.features + x.features)


class SeparateHead(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.hm = nn.Sequential(spconv.SparseSequential(spconv.SubMConv2d(c, c, 1), nn.ReLU()), spconv.SubMConv2d(c, 2, 1))
        self.reg = spconv.SubMConv2d(c, 3, 1)


def test_units_are_recognized_by_class_name_and_structure() -> None:
    model = nn.Module()
    model.stem = spconv.SparseSequential(spconv.SubMConv2d(3, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU())
    model.stage = spconv.SparseSequential(SparseBasicBlock(4), SparseBasicBlock(4))
    model.pair = spconv.SparseSequential(spconv.SubMConv2d(4, 4, 1), spconv.SubMConv2d(4, 4, 1))  # no pattern
    model.head = SeparateHead(4)
    quantize_sparse_model(model, load_quant_config(MINMAX))
    assert sparse_units(model) == {
        "stem": UnitKind.CONV, "stage.0": UnitKind.BLOCK, "stage.1": UnitKind.BLOCK,
        "pair.0": UnitKind.LAYER, "pair.1": UnitKind.LAYER,
        "head.hm": UnitKind.HEAD_BRANCH, "head.reg": UnitKind.HEAD_BRANCH,
    }
