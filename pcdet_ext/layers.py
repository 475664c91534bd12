"""Quantized spconv sparse convolutions, registered with the core on import.

Importing this module (``import pcdet_ext`` does) registers a wrapper for each of spconv's
``SubMConv3d``, ``SparseConv3d``, ``SubMConv2d``, ``SparseConv2d`` and ``SparseInverseConv3d``
through :func:`rdoq_plugins.modules.register_quant_layer`, so :func:`rdoq_plugins.quantize_model`
wraps them and :func:`rdoq_plugins.fuse_conv_bn` folds a following ``BatchNorm1d`` into them.

Facts of the installed spconv (2.3.8) the wrappers rely on:

* Weights are stored ``[out, *kernel, in]`` ("KRSC": ``spconv.constants.ALL_WEIGHT_IS_KRSC`` is
  True for every algorithm; the CPU build only has ``ConvAlgo.Native``). Output channels sit on
  axis 0, so ``weight_out_axis = 0`` and per-channel / per-group weight quantization runs there.
* Exception: a layer with one kernel tap and stride 1 (``layer.conv1x1``, e.g. VoxelNeXt's 1x1
  head convs) skips the gather-scatter kernel and computes ``features @ weight.view(in, out)``,
  i.e. it reads the same storage as an ``[in, out]`` matrix (spconv issue #450; trained
  checkpoints depend on it, so it is kept). For these layers axis 0 of the stored weight is *not*
  the output channel: BN folding uses :meth:`QuantSparseConvolution.output_channel_weight`, while
  weight-quantizer units along axis 0 group rows of the stored weight (consistently in
  calibration, AdaRound and the forward pass, but they are not output channels).
* The activation quantizers act on ``SparseConvTensor.features`` (``[N, C]``, channels last);
  indices, spatial shape and the indice dict pass through untouched (``replace_feature``).
"""
from __future__ import annotations

from cumm import tensorview as tv
from spconv import pytorch as spconv
from spconv.pytorch.conv import SparseConvolution
from spconv.pytorch.core import SparseConvTensor
from torch import Tensor, nn

from rdoq_plugins.modules.layer_map import register_quant_layer
from rdoq_plugins.modules.quant_layer import QuantLayer


class QuantSparseConvolution(QuantLayer, SparseConvolution):
    """Quantized spconv ``SparseConvolution``: fake-quantized weight and features, same indices."""

    weight_out_axis = 0

    @classmethod
    def output_channel_weight(cls, layer: nn.Module) -> Tensor:
        weight: Tensor = layer.weight  # type: ignore[assignment]
        if getattr(layer, "act_type", tv.gemm.Activation.None_) != tv.gemm.Activation.None_:
            raise ValueError(f"{type(layer).__name__} fuses an activation; a BN after it cannot be folded")
        if getattr(layer, "conv1x1", False):
            # spconv computes features @ weight.view(in, out): output channels are its columns.
            return weight.view(int(layer.in_channels), int(layer.out_channels)).t()  # type: ignore[arg-type]
        return weight

    def forward_with_weight(  # type: ignore[override]
        self, x: SparseConvTensor, weight: Tensor, add_input: SparseConvTensor | None = None
    ) -> SparseConvTensor:
        """spconv's own forward (``SparseConvolution.forward``) with ``weight`` in place of ``self.weight``."""
        return self._conv_forward(
            self.training,
            x,
            weight.contiguous(),
            self.bias,
            add_input,
            name=self.name,
            sparse_unique_name=self._sparse_unique_name,
            act_type=self.act_type,
            act_alpha=self.act_alpha,
            act_beta=self.act_beta,
        )

    def forward(  # type: ignore[override]
        self, input: SparseConvTensor, add_input: SparseConvTensor | None = None
    ) -> SparseConvTensor:
        if self.input_quantizer is not None:
            input = input.replace_feature(self.input_quantizer(input.features))
        out = self.forward_with_weight(input, self.quantized_weight(), add_input)
        if self.output_quantizer is not None:
            out = out.replace_feature(self.output_quantizer(out.features))
        return out


@register_quant_layer(spconv.SubMConv3d)
class QuantSubMConv3d(QuantSparseConvolution, spconv.SubMConv3d):
    """Quantized ``spconv.SubMConv3d``."""


@register_quant_layer(spconv.SparseConv3d)
class QuantSparseConv3d(QuantSparseConvolution, spconv.SparseConv3d):
    """Quantized ``spconv.SparseConv3d``."""


@register_quant_layer(spconv.SubMConv2d)
class QuantSubMConv2d(QuantSparseConvolution, spconv.SubMConv2d):
    """Quantized ``spconv.SubMConv2d``."""


@register_quant_layer(spconv.SparseConv2d)
class QuantSparseConv2d(QuantSparseConvolution, spconv.SparseConv2d):
    """Quantized ``spconv.SparseConv2d``."""


@register_quant_layer(spconv.SparseInverseConv3d)
class QuantSparseInverseConv3d(QuantSparseConvolution, spconv.SparseInverseConv3d):
    """Quantized ``spconv.SparseInverseConv3d``."""


QUANT_SPARSE_LAYERS: dict[type[nn.Module], type[QuantSparseConvolution]] = {
    spconv.SubMConv3d: QuantSubMConv3d,
    spconv.SparseConv3d: QuantSparseConv3d,
    spconv.SubMConv2d: QuantSubMConv2d,
    spconv.SparseConv2d: QuantSparseConv2d,
    spconv.SparseInverseConv3d: QuantSparseInverseConv3d,
}
