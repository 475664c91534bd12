"""A sparse quantized checkpoint written by an earlier code version loads with today's."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pcdet_ext
from pcdet_ext.sparse_detector import load_quantized
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import fuse_conv_bn

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"


@pytest.fixture(autouse=True)
def _cpu() -> None:
    pcdet_ext.apply_cpu_patches()


def test_legacy_sparse_checkpoint_loads_strictly() -> None:
    model, qcfg = load_quantized(fuse_conv_bn(toy.build_toy(seed=5, narrow=True, blocks=1)),
                                 LEGACY / "sparse_quantized.pth")
    assert qcfg.w_qconfig.bit == 4 and qcfg.a_qconfig.bit == 8
    saved = torch.load(LEGACY / "sparse_quantized.pth", weights_only=True)["state_dict"]
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
