"""The head branches of a VoxelNeXt-shaped detector (spconv) captured together: one FP and one
quantized pass per batch for all of them, the same cached inputs, targets and structure as each
branch captured alone (after an earlier branch changed, as reconstruction changes it)."""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext.sparse_io import SparseUnitIO
from pcdet_ext.units import UnitKind, sparse_units
from rdoq_bench import voxelnext_toy as toy
from rdoq_plugins import calibrate, fuse_conv_bn, load_quant_config
from rdoq_plugins.recon import ChunkCache, cache_unit, survey_units
from rdoq_plugins.recon.shared_capture import SharedCaptures, input_groups
from rdoq_plugins.recon.unit_loop import add_held


def _equal(a: object, b: object) -> bool:
    """Tensors equal exactly, containers element by element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def test_head_branches_captured_together_equal_each_captured_alone() -> None:
    pcdet_ext.apply_cpu_patches()
    torch.set_num_threads(1)
    batches = toy.batches_of(toy.make_scenes(4, seed=2), 2)
    fp = toy.build_toy(seed=0, narrow=True, blocks=1)
    toy.set_bn_statistics(fp, batches)
    fp = fuse_conv_bn(fp).eval()
    model = copy.deepcopy(fp)
    pcdet_ext.quantize_sparse_model(model, load_quant_config({"w_qconfig": {"bit": 3}}))
    calibrate(model, batches, toy.run_model)
    units = sparse_units(model)
    survey = survey_units(fp, list(units), batches[0], toy.run_model)
    groups = input_groups(survey, [s.name for s in survey])
    branches = [n for n, kind in units.items() if kind is UnitKind.HEAD_BRANCH]
    assert groups == [branches] and len(branches) > 4  # every branch of every head reads shared_conv's output
    io = SparseUnitIO()
    shared = SharedCaptures(io, 1 << 30)
    assert shared.capture(model, fp, branches, batches, toy.run_model)
    with torch.no_grad():  # as reconstruction of the first branch does
        for p in model.get_submodule(branches[0]).parameters():
            p.add_(0.25)
    for name in (branches[0], branches[1], branches[-1]):
        with ChunkCache() as alone, ChunkCache() as held:
            cache_unit(model, fp, name, batches, toy.run_model, alone, io, num_calls=1)
            add_held(model, name, shared.take(name), held, io)
            assert alone.num_chunks == held.num_chunks == len(batches)
            for i in range(alone.num_chunks):
                assert _equal(alone.chunk_with_context(i), held.chunk_with_context(i)), (name, i)
