"""The sparse UnitIO (``pcdet_ext.sparse_io``): capture, cache and rebuild a unit's sparse calls,
site alignment, in-place safety, inverse-conv rulebooks through a spill, and reconstruction from
memory and from disk alike."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

spconv = pytest.importorskip("spconv.pytorch")

from pcdet_ext.sparse_detector import quantize_sparse_model
from pcdet_ext.sparse_io import SparseSnapshot, SparseUnitIO, site_permutation
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import QDropReconstructor, calibrate, fuse_conv_bn, load_quant_config
from rdoq_plugins.config import ReconConfig
from rdoq_plugins.recon import ChunkCache, cache_unit, capture_calls

LEARNED = {
    "w_qconfig": {"quantizer": "AdaRoundFakeQuantize", "observer": "MinMaxObserver", "bit": 3, "ch_axis": 0},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "MinMaxObserver", "bit": 8},
}


def test_site_permutation() -> None:
    gen = torch.Generator().manual_seed(0)
    sites = torch.unique(torch.randint(0, 9, (40, 4), generator=gen), dim=0).int()
    assert site_permutation(sites, sites) is None
    order = torch.randperm(len(sites), generator=gen)
    perm = site_permutation(sites[order], sites)
    assert perm is not None and torch.equal(sites[order][perm], sites)
    other = sites.clone()
    other[0, 1] = 50
    with pytest.raises(RuntimeError, match="different"):
        site_permutation(sites, other)
    with pytest.raises(RuntimeError, match="cannot be aligned"):
        site_permutation(sites, sites[1:])


def test_snapshot_is_safe_from_voxelnexts_in_place_rescaling(batches: list[dict]) -> None:
    model = fuse_conv_bn(toy.build_toy(narrow=True, blocks=1))
    io = SparseUnitIO()
    [(inp, out)] = capture_calls(model, model.backbone_3d.conv6, batches[0], toy.run_model, io=io)
    bb = model.backbone_3d
    with torch.no_grad():
        x = spconv.SparseConvTensor(batches[0]["voxel_features"], batches[0]["voxel_coords"], bb.sparse_shape, 2)
        x5 = bb.conv5(bb.conv4(bb.conv3(bb.conv2(bb.conv1(bb.conv_input(x))))))
    assert isinstance(inp, SparseSnapshot) and isinstance(out, SparseSnapshot)
    # The forward went on and did x_conv5.indices[:, 1:] *= 2 after the capture.
    assert torch.equal(inp.indices, x5.indices) and torch.equal(inp.features, x5.features)
    assert (out.indices[:, 1:].max(0).values < torch.tensor(out.spatial_shape)).all()


@pytest.mark.parametrize("unit", ["backbone_3d.conv_input", "backbone_3d.conv1.0", "backbone_3d.conv2.0",
                                  "backbone_3d.conv6.0", "backbone_3d.conv_out", "backbone_3d.shared_conv",
                                  "dense_head.heads_list.1.hm"])
def test_cached_sparse_call_rebuilds_the_units_output(unit: str, batches: list[dict]) -> None:
    model = fuse_conv_bn(toy.build_toy(narrow=True, blocks=1))
    module = model.get_submodule(unit)
    io = SparseUnitIO()
    [(inp, out)] = capture_calls(model, module, batches[1], toy.run_model, io=io)
    shuffled = copy.copy(inp)
    order = torch.randperm(len(inp.indices), generator=torch.Generator().manual_seed(0))
    shuffled.indices, shuffled.features = inp.indices[order], inp.features[order]
    q, f, o, ctx = io.chunk(module, shuffled, inp, out)
    assert torch.equal(q, f)  # the quantized side is put back in the FP side's site order
    with torch.no_grad():
        torch.testing.assert_close(io.run(module, f, ctx), o, atol=1e-5, rtol=1e-5)
    assert ctx["pairs"] == {}  # no inverse conv: submanifold rulebooks are rebuilt, not cached


def test_inverse_conv_rulebook_travels_with_the_chunk_through_a_spill(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = spconv.SparseSequential(
        spconv.SparseConv3d(4, 6, 3, stride=2, padding=1, indice_key="down"),
        spconv.SparseSequential(spconv.SubMConv3d(6, 6, 3, padding=1, indice_key="s"), nn.ReLU(),
                                spconv.SparseInverseConv3d(6, 5, 3, indice_key="down")),
    ).eval()
    flat = torch.randperm(6 * 7 * 5)[:60]
    coords = torch.stack(torch.unravel_index(flat, (6, 7, 5)), dim=1)
    x = spconv.SparseConvTensor(torch.randn(60, 4), torch.cat([torch.zeros(60, 1, dtype=torch.long), coords], 1).int(),
                                [6, 7, 5], 1)
    io = SparseUnitIO()
    [(inp, out)] = capture_calls(model, model[1], x, lambda m, b: m(b), io=io)
    q, f, o, ctx = io.chunk(model[1], inp, inp, out)
    assert list(ctx["pairs"]) == ["down"] and torch.equal(ctx["out_indices"], x.indices)
    with ChunkCache("cpu", 0, tmp_path) as cache:  # no memory budget: spilled, loaded weights_only
        cache.add(q, f, o, context=ctx)
        assert cache.bytes_on_disk > 0 and cache.bytes_in_memory == 0
        _, f2, _, ctx2 = cache.sample_chunk(torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(io.run(model[1], f2, ctx2), o, atol=1e-5, rtol=1e-5)


def test_sparse_reconstruction_is_the_same_from_memory_and_from_disk(batches: list[dict], tmp_path: Path) -> None:
    fp = fuse_conv_bn(toy.build_toy(narrow=True, blocks=1))
    model = copy.deepcopy(fp)
    quantize_sparse_model(model, load_quant_config(LEARNED))
    calibrate(model, batches, toy.run_model)
    unit = "backbone_3d.conv2.0"
    results = []
    for budget in (1 << 30, 0):
        m = copy.deepcopy(model)
        with ChunkCache("cpu", budget, tmp_path) as cache:
            cache_unit(m, fp, unit, batches, toy.run_model, cache, SparseUnitIO())
            assert cache.num_chunks == len(batches) == len(cache)
            stats = QDropReconstructor(ReconConfig(iters=6, batch_size=1))(m.get_submodule(unit), cache, io=SparseUnitIO())
        layer = m.get_submodule(unit)[0]
        results.append((stats, layer.weight_quantizer.alpha.clone(), layer.input_quantizer.scale.clone()))
    (s1, a1, c1), (s2, a2, c2) = results
    assert s1.iters == s2.iters == 6 and s1.final_loss == s2.final_loss
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    assert not torch.equal(c1, model.get_submodule(unit)[0].input_quantizer.scale)  # the step sizes moved
