"""Strict FP checkpoints (``pcdet_ext.weights``), on the toy: its module names are VoxelNeXt's.

OpenPCDet's own loader only logs the keys it cannot load; here any mismatch is an error, and
spconv 1.x's weight layout is adapted."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from pcdet_ext.weights import load_fp_weights
from rdoq_plugins.workflow.checkpoint import is_quantized, read_checkpoint
from rdoq_plugins.workflow.checkpoint import state_dict_of as fp_state_dict
from tests.pcdet_ext.conftest import openpcdet_ckpt, toy_with_bn_stats


def test_openpcdet_checkpoint_loads_strictly(tmp_path: Path) -> None:
    src = toy_with_bn_stats(0)
    path = openpcdet_ckpt(src.state_dict(), tmp_path / "ckpt.pth")
    ckpt = read_checkpoint(path)
    assert not is_quantized(ckpt)
    model = toy_with_bn_stats(1)
    load_fp_weights(model, fp_state_dict(ckpt, path), "checkpoint")
    for (k, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    # Bare state dicts and 'state_dict' entries load too.
    assert fp_state_dict(src.state_dict(), path).keys() == src.state_dict().keys()
    assert fp_state_dict({"state_dict": src.state_dict()}, path).keys() == src.state_dict().keys()


@pytest.mark.parametrize("damage", ["renamed", "missing", "unexpected", "reshaped"])
def test_any_checkpoint_key_mismatch_is_an_error(damage: str, tmp_path: Path) -> None:
    state = toy_with_bn_stats(0).state_dict()
    key = "dense_head.heads_list.0.center.0.1.running_mean"
    if damage == "renamed":
        state = {(k.replace("center.0.1", "centre.0.1") if k == key else k): v for k, v in state.items()}
    elif damage == "missing":
        del state[key]
    elif damage == "unexpected":
        state["dense_head.heads_list.0.iou.1.weight"] = torch.zeros(3)
    else:
        state[key] = state[key][:-1]
    path = openpcdet_ckpt(state, tmp_path / "ckpt.pth")
    with pytest.raises(KeyError, match="does not match the model"):
        load_fp_weights(toy_with_bn_stats(1), fp_state_dict(read_checkpoint(path), path), f"checkpoint {path}")


def test_spconv_1x_weight_layout_is_adapted(tmp_path: Path) -> None:
    src = toy_with_bn_stats(0).state_dict()
    state = dict(src)
    w3d, w2d = "backbone_3d.conv2.0.0.weight", "backbone_3d.conv_out.0.weight"
    state[w3d] = src[w3d].permute(1, 2, 3, 4, 0).contiguous()  # [out, k, k, k, in] -> spconv 1.x [k, k, k, in, out]
    state[w2d] = src[w2d].permute(1, 2, 3, 0).contiguous()
    model = toy_with_bn_stats(1)
    load_fp_weights(model, state, "checkpoint")
    assert torch.equal(model.state_dict()[w3d], src[w3d]) and torch.equal(model.state_dict()[w2d], src[w2d])
    state[w3d] = torch.zeros(3, 3, 3)  # no layout fits
    with pytest.raises(KeyError, match="does not match"):
        load_fp_weights(toy_with_bn_stats(1), state, "checkpoint")
