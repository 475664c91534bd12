"""Quantized spconv layers against dense references, gradients, BN1d folding, quantize_model."""
from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

spconv = pytest.importorskip("spconv.pytorch")

from spconv.pytorch.conv import SparseConvolution

import pcdet_ext  # (registers the quantized spconv layers)
from rdoq_plugins import (
    ActPosition,
    QuantLayer,
    calibrate,
    fuse_conv_bn,
    load_quant_config,
    quantize_model,
    set_quant_state,
)
from tests.conftest import MINMAX

LEARNED = {
    "w_qconfig": {"quantizer": "AdaRoundFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


@pytest.fixture(autouse=True)
def _cpu() -> None:
    pcdet_ext.apply_cpu_patches()


def _sparse_input(shape: Sequence[int], channels: int, num: int, batch: int = 2) -> spconv.SparseConvTensor:
    """``num`` distinct random active sites per batch item with random features."""
    rows = []
    for b in range(batch):
        flat = torch.randperm(int(torch.tensor(shape).prod()))[:num]
        coords = torch.stack(torch.unravel_index(flat, tuple(shape)), dim=1)
        rows.append(torch.cat([torch.full((num, 1), b), coords], dim=1))
    indices = torch.cat(rows).int()
    return spconv.SparseConvTensor(torch.randn(len(indices), channels), indices, list(shape), batch)


def _at(dense: Tensor, indices: Tensor) -> Tensor:
    """Channels-first dense values at sparse ``indices`` ([N, 1 + ndim]) as ``[N, C]``."""
    idx = indices.long()
    return dense.movedim(1, -1)[tuple(idx.t())]


def _torch_weight(layer: nn.Module, weight: Tensor) -> Tensor:
    """spconv's weight as ``torch.nn.functional.conv*d`` reads it: ``[out, in, *kernel]``."""
    ndim = weight.dim() - 2
    if layer.conv1x1:  # spconv computes features @ weight.view(in, out) (issue #450)
        matrix = weight.reshape(layer.in_channels, layer.out_channels).t()
        return matrix.reshape(layer.out_channels, layer.in_channels, *[1] * ndim)
    return weight.permute(0, ndim + 1, *range(1, ndim + 1))


def _quantize(model: nn.Module, x: spconv.SparseConvTensor, cfg: dict = MINMAX) -> None:
    quantize_model(model, load_quant_config(cfg))
    calibrate(model, [x], lambda m, b: m(b))


def _check_quantized(layer: QuantLayer, features: Tensor) -> tuple[Tensor, Tensor]:
    """The fake-quantized weight and input features; both differ from the FP ones."""
    wq = layer.weight_quantizer(layer.weight).detach()
    fq = layer.input_quantizer(features).detach()
    assert not torch.allclose(wq, layer.weight) and not torch.allclose(fq, features)
    return wq, fq


CASES = [  # (FP layer, spatial shape, stride, padding)
    (lambda: spconv.SubMConv3d(4, 6, 3, padding=1, bias=True, indice_key="s1"), (5, 6, 7), 1, 1),
    (lambda: spconv.SubMConv3d(4, 6, 1, bias=True), (5, 6, 7), 1, 0),  # 1x1 path
    (lambda: spconv.SubMConv2d(3, 5, 3, padding=1, bias=False), (9, 8), 1, 1),
    (lambda: spconv.SubMConv2d(3, 5, 1, bias=True), (9, 8), 1, 0),  # VoxelNeXt head kind
    (lambda: spconv.SparseConv3d(4, 6, 3, stride=2, padding=1, bias=True), (5, 6, 7), 2, 1),
    (lambda: spconv.SparseConv3d(4, 6, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False), (5, 6, 7),
     (2, 1, 1), 0),
    (lambda: spconv.SparseConv2d(3, 5, 3, stride=1, padding=1, bias=True), (9, 8), 1, 1),
    (lambda: spconv.SparseConv2d(3, 5, 2, stride=2, padding=0, bias=False), (9, 8), 2, 0),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_quantized_sparse_conv_matches_dense_reference(case: int) -> None:
    make, shape, stride, padding = CASES[case]
    model = spconv.SparseSequential(make()).eval()
    layer_fp = model[0]
    x = _sparse_input(shape, layer_fp.in_channels, num=20)
    fp_out = model(x)
    _quantize(model, x)
    layer = model[0]
    assert isinstance(layer, QuantLayer) and isinstance(layer, type(layer_fp)) and layer.weight is layer_fp.weight
    wq, fq = _check_quantized(layer, x.features)
    y = model(x)
    assert not torch.allclose(y.features, fp_out.features)

    conv = F.conv3d if len(shape) == 3 else F.conv2d
    x_q = x.replace_feature(fq).dense()
    ref = conv(x_q, _torch_weight(layer, wq), layer.bias, stride=stride, padding=padding)
    assert list(ref.shape[2:]) == list(y.spatial_shape)
    torch.testing.assert_close(y.features, _at(ref, y.indices), atol=1e-5, rtol=1e-5)
    if layer.subm:  # outputs at the input sites only
        assert torch.equal(y.indices, x.indices)
    else:  # outputs wherever an input site lies in the receptive field
        ones = torch.ones(1, 1, *layer.kernel_size)
        occupied = conv(x.replace_feature(torch.ones(len(x.indices), 1)).dense(), ones, stride=stride, padding=padding)
        expected = {tuple(r) for r in torch.nonzero(occupied[:, 0] > 0).tolist()}
        assert {tuple(r) for r in y.indices.tolist()} == expected
    assert y.indice_dict.keys() == fp_out.indice_dict.keys()


def test_quantized_inverse_conv_matches_transposed_dense_reference() -> None:
    model = spconv.SparseSequential(
        spconv.SparseConv3d(4, 6, 3, stride=2, padding=1, bias=False, indice_key="down"),
        spconv.SparseInverseConv3d(6, 5, 3, indice_key="down", bias=True),
    ).eval()
    x = _sparse_input((6, 7, 5), 4, num=25)
    _quantize(model, x)
    inverse = model[1]
    assert isinstance(inverse, pcdet_ext.QuantSparseInverseConv3d)
    mid = model[0](x)
    y = inverse(mid)
    wq, fq = _check_quantized(inverse, mid.features)
    assert torch.equal(y.indices, x.indices) and list(y.spatial_shape) == [6, 7, 5]
    # The inverse of a strided conv is its transpose on the conv's index pairs.
    weight = wq.permute(4, 0, 1, 2, 3)  # [in, out, *kernel], as conv_transpose3d reads it
    # output_padding = stride - 1 covers every input site of the strided conv; crop to its shape.
    ref = F.conv_transpose3d(mid.replace_feature(fq).dense(), weight, inverse.bias, stride=2, padding=1,
                             output_padding=1)[:, :, :6, :7, :5]
    torch.testing.assert_close(y.features, _at(ref, y.indices), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_gradients_reach_weights_quantizer_parameters_and_features(train: bool) -> None:
    model = spconv.SparseSequential(
        spconv.SubMConv3d(4, 6, 3, padding=1, bias=True, indice_key="a"),
        nn.ReLU(),
        spconv.SparseConv3d(6, 8, 3, stride=2, padding=1, bias=True),
        spconv.SubMConv3d(8, 8, 1, bias=False),
    ).train(train)
    x = _sparse_input((5, 6, 7), 4, num=20)
    _quantize(model, x, LEARNED)
    layers = [m for m in model if isinstance(m, QuantLayer)]
    assert len(layers) == 3
    for layer in layers:  # AdaRound: learned rounding from here on (as in reconstruction)
        layer.weight_quantizer.init_rounding(layer.weight)
    features = x.features.clone().requires_grad_(True)
    out = model(x.replace_feature(features))
    out.features.square().sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    for layer in layers:
        assert layer.weight_quantizer.alpha.grad.abs().sum() > 0
        assert layer.input_quantizer.scale.grad.abs().sum() > 0
    # Straight-through weight quantization (LSQ) passes the gradient on to the weight itself.
    model = spconv.SparseSequential(spconv.SubMConv3d(4, 6, 3, padding=1, bias=True)).train(train)
    _quantize(model, x, {**LEARNED, "w_qconfig": {**LEARNED["w_qconfig"], "quantizer": "LSQFakeQuantize"}})
    model(x.replace_feature(features)).features.sum().backward()
    assert model[0].weight.grad.abs().sum() > 0 and model[0].weight_quantizer.scale.grad.abs().sum() > 0
    assert (model[0].bias.grad is not None) == train  # spconv fuses the bias in eval mode


def _bn(channels: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def test_bn1d_folds_into_every_sparse_conv_kind() -> None:
    model = spconv.SparseSequential(
        spconv.SubMConv3d(4, 6, 3, padding=1, bias=False, indice_key="a"), _bn(6), nn.ReLU(),
        spconv.SparseConv3d(6, 8, 3, stride=2, padding=1, bias=True, indice_key="down"), _bn(8), nn.ReLU(),
        spconv.SubMConv3d(8, 5, 1, bias=False), _bn(5),  # 1x1: spconv reads the weight as [in, out]
        spconv.SubMConv3d(5, 7, 1, bias=True), _bn(7),
        spconv.SparseInverseConv3d(7, 3, 3, indice_key="down", bias=False), _bn(3),
    ).eval()
    x = _sparse_input((5, 6, 7), 4, num=20)
    ref = model(x)
    fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert all(m.bias is not None for m in model if isinstance(m, SparseConvolution))
    y = model(x)
    # spconv's CPU hash may emit strided output sites in another order on another run: compare by site.
    (yi, yf), (ri, rf) = _by_site(y), _by_site(ref)
    assert torch.equal(yi, ri)
    torch.testing.assert_close(yf, rf, atol=1e-5, rtol=1e-5)


def _by_site(t: spconv.SparseConvTensor) -> tuple[Tensor, Tensor]:
    """Indices and features sorted by site."""
    idx = t.indices.long()
    key = idx[:, 0]
    for d in range(1, idx.shape[1]):
        key = key * (int(idx[:, d].max()) + 1) + idx[:, d]
    order = key.argsort()
    return t.indices[order], t.features[order]


def test_bn1d_folds_into_a_quantized_sparse_conv() -> None:
    model = spconv.SparseSequential(spconv.SubMConv2d(3, 5, 1, bias=False), _bn(5)).eval()
    x = _sparse_input((9, 8), 3, num=15)
    ref = model(x)
    quantize_model(model, load_quant_config(MINMAX))  # quantizers start disabled
    fuse_conv_bn(model)
    torch.testing.assert_close(model(x).features, ref.features, atol=1e-5, rtol=1e-5)


def test_quantize_model_wraps_every_sparse_conv_and_keeps_state_dict_keys() -> None:
    model = spconv.SparseSequential(
        spconv.SubMConv3d(4, 6, 3, padding=1, bias=False, indice_key="a"), nn.BatchNorm1d(6), nn.ReLU(),
        spconv.SparseConv3d(6, 8, 3, stride=2, padding=1, bias=False, indice_key="down"),
        spconv.SparseInverseConv3d(8, 4, 3, indice_key="down", bias=True),
        spconv.ToDense(),
        nn.Conv3d(4, 2, 1),
    ).eval()
    fp_keys = set(model.state_dict())
    fp_types = {name: type(m) for name, m in model.named_modules()}
    x = _sparse_input((5, 6, 7), 4, num=20)
    ref = model(x)
    wrapped = quantize_model(model, load_quant_config(MINMAX), act_position=ActPosition.INPUT)
    assert sorted(wrapped) == ["0", "3", "4", "6"]
    for name, layer in wrapped.items():
        assert isinstance(layer, fp_types[name]) and type(layer) is not fp_types[name]
    assert isinstance(model[0], pcdet_ext.QuantSubMConv3d) and isinstance(model[3], pcdet_ext.QuantSparseConv3d)
    keys = set(model.state_dict())
    assert fp_keys <= keys
    assert all(".weight_quantizer." in k or ".input_quantizer." in k for k in keys - fp_keys)
    torch.testing.assert_close(model(x), ref)  # quantizers start disabled
    calibrate(model, [x], lambda m, b: m(b))
    assert not torch.allclose(model(x), ref)
    set_quant_state(model, weight=False, act=False)
    torch.testing.assert_close(model(x), ref)


def test_output_quantizer_acts_on_features_and_keeps_indices() -> None:
    model = spconv.SparseSequential(spconv.SubMConv2d(3, 5, 3, padding=1, indice_key="k")).eval()
    x = _sparse_input((9, 8), 3, num=15)
    quantize_model(model, load_quant_config(MINMAX), act_position=ActPosition.OUTPUT)
    calibrate(model, [x], lambda m, b: m(b))
    layer = model[0]
    assert layer.input_quantizer is None and layer.output_quantizer is not None
    y = model(x)
    set_quant_state(model, act=False)
    y_w = model(x)
    torch.testing.assert_close(y.features, layer.output_quantizer.quantize(y_w.features))
    assert not torch.allclose(y.features, y_w.features)
    assert torch.equal(y.indices, x.indices) and "k" in y.indice_dict
