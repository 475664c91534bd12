"""Output placement of activation quantizers in an mmdet detector (``a_qconfig.position: output``).

The places of the official QDrop detection code (Wei et al., ICLR 2022), on ResNet + FPN:

- the stem: the stem conv's output after its ReLU, before the max-pool;
- a Bottleneck: the outputs of conv1 + ReLU and conv2 + ReLU, and one quantizer on the block's
  output after the residual add and the final ReLU (a BasicBlock: conv1 + ReLU and the block
  output); conv3 and the downsample conv get none, and no conv of a block quantizes its input;
- the FPN lateral convs' outputs (RetinaNet's extra conv on the last stage reads a quantized block
  output, so it keeps no input quantizer either).

Every other quantized layer reads a tensor none of these quantizes (the image, the FPN top-down
sums, the FPN outputs the heads read, RoI features) and keeps its input quantizer, so each tensor
that input placement quantizes is still quantized. Each output quantizer sits in the reconstruction
unit that produces its tensor (the stem conv, the block, the lateral ConvModule), so its step is
learned there, with QDrop's dropping.

Output quantizers use the top-level ``a_qconfig``; an override's ``a_qconfig`` keeps its meaning,
the layer's input (``backbone.conv1: {a_qconfig: null}`` keeps the image FP, as the official code
does). mmdet's blocks call one ReLU module three times, so it cannot be wrapped: conv1 and conv2 get
the ReLU fused (:class:`~rdoq_plugins.modules.ConvReLU2d`; the block's own ReLU after it changes
nothing), and the block's class is swapped for a subclass that quantizes what the block returns.
"""
from __future__ import annotations

import re
from typing import Any

from mmcv.cnn import ConvModule
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.necks import FPN
from torch import Tensor, nn

from rdoq_plugins.config import ConfigError, QuantConfig
from rdoq_plugins.config.placement import Placement
from rdoq_plugins.modules import ActPosition, QuantLayer, build_quantizer, fuse_relu
from rdoq_plugins.modules.quantize_model import PositionOf
from rdoq_plugins.quant.fake_quantize import FakeQuantize

_QUANTIZED_BLOCKS: dict[type, type] = {}  # block class -> its subclass with an output quantizer


def _refuse(problem: str) -> ConfigError:
    return ConfigError("a_qconfig.position", problem, Placement.OUTPUT.value, Placement.INPUT.value)


def _backbone(model: nn.Module) -> ResNet:
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, ResNet) or backbone.deep_stem:
        kind = type(backbone).__name__
        raise _refuse(f"output placement knows mmdet's ResNet with the plain stem, not {kind}")
    return backbone


def _neck(model: nn.Module) -> FPN | None:
    neck = getattr(model, "neck", None)
    if neck is not None and not isinstance(neck, FPN):
        raise _refuse(f"output placement knows mmdet's FPN neck, not {type(neck).__name__}")
    return neck


def _blocks(backbone: ResNet) -> list[tuple[str, nn.Module]]:
    """The residual blocks of ``backbone`` with their names relative to it."""
    return [(n, m) for n, m in backbone.named_modules() if isinstance(m, (Bottleneck, BasicBlock))]


def _relu_convs(backbone: ResNet) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(name, conv, norm)`` of each conv that a ReLU follows: the stem conv, conv1 of every block
    and conv2 of a Bottleneck (names relative to the backbone)."""
    out = [("conv1", backbone.conv1, backbone.norm1)]
    for name, block in _blocks(backbone):
        out.append((f"{name}.conv1", block.conv1, block.norm1))
        if isinstance(block, Bottleneck):
            out.append((f"{name}.conv2", block.conv2, block.norm2))
    return out


def fuse_relus(model: nn.Module) -> None:
    """Fuses the ReLU into the stem conv, every block's conv1 and every Bottleneck's conv2, in
    place (BN folded first); the model computes the same values."""
    backbone = _backbone(model)
    for name, conv, norm in _relu_convs(backbone):
        if not isinstance(norm, nn.Identity):
            raise TypeError(f"backbone.{name}: fold BN before fusing the ReLU (fuse_conv_bn)")
        try:
            fuse_relu(conv)
        except TypeError as err:
            raise _refuse(f"backbone.{name}: {err}") from None


def fuse_for_placement(model: nn.Module, qcfg: QuantConfig) -> None:
    """:func:`fuse_relus` under output placement (on the FP model too, so a stem conv's FP output,
    what its reconstruction fits, is after the ReLU); nothing under input placement."""
    if qcfg.a_qconfig.position is Placement.OUTPUT:
        fuse_relus(model)


def reads_quantized(model: nn.Module) -> set[str]:
    """Names of the layers whose input an output quantizer already quantizes: every conv of a
    residual block, the FPN lateral convs and an FPN extra conv on the last backbone stage."""
    backbone = _backbone(model)
    out = {f"backbone.{b}.{n}" for b, block in _blocks(backbone) for n, m in block.named_modules()
           if isinstance(m, (nn.Conv2d, QuantLayer))}
    neck = _neck(model)
    if neck is not None:
        out |= {f"neck.lateral_convs.{i}.conv" for i in range(len(neck.lateral_convs))}
        used = neck.backbone_end_level - neck.start_level
        if neck.add_extra_convs == "on_input" and len(neck.fpn_convs) > used:
            out.add(f"neck.fpn_convs.{used}.conv")
    return out


def output_positions(model: nn.Module, qcfg: QuantConfig) -> PositionOf:
    """Per layer: no input quantizer where :func:`reads_quantized` says one is already there, else
    the input. An override that sets ``a_qconfig`` on such a layer would change nothing: an error."""
    none = reads_quantized(model)
    for name in sorted(none):
        layer_cfg = qcfg.for_layer(name)
        if layer_cfg is not None and layer_cfg.a_qconfig != qcfg.a_qconfig:
            keys = [k for k, _ in qcfg.overrides if k == name] or [
                k for k, _ in qcfg.overrides if k.startswith("re:") and re.fullmatch(k[3:], name)]
            key = keys[0]  # the override for_layer applied: an exact name first, then the first pattern
            raise ConfigError(f"overrides.{key}.a_qconfig", f"{name} reads a tensor an output quantizer already "
                              "quantizes (a_qconfig.position: output), so its a_qconfig would change nothing; "
                              "output quantizers use the top-level a_qconfig")

    def position(name: str, module: nn.Module) -> ActPosition:
        return ActPosition.NONE if name in none else ActPosition.INPUT

    return position


def _quantized_block(cls: type[nn.Module]) -> type[nn.Module]:
    """``cls`` with a ``forward`` that quantizes the block's output (after the add and the ReLU)."""
    if cls in _QUANTIZED_BLOCKS.values():
        return cls
    if cls not in _QUANTIZED_BLOCKS:
        def forward(self: Any, x: Tensor) -> Tensor:
            return self.output_quantizer(super(block, self).forward(x))

        block = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                            "__doc__": f"{cls.__name__} with a quantized output."})
        _QUANTIZED_BLOCKS[cls] = block
    return _QUANTIZED_BLOCKS[cls]


def _output_quantizer(qcfg: QuantConfig, channels: int) -> FakeQuantize:
    """An output quantizer from the top-level ``a_qconfig``."""
    return build_quantizer(qcfg.a_qconfig, channels, is_weight=False)


def _add_output(layer: nn.Module, qcfg: QuantConfig) -> bool:
    """An output quantizer on a quantized layer (an FP layer keeps its output FP)."""
    if not isinstance(layer, QuantLayer):
        return False
    layer.output_quantizer = _output_quantizer(qcfg, int(layer.out_channels))  # type: ignore[arg-type]
    return True


def _conv_only(module: nn.Module) -> bool:
    """Whether ``module`` is a ConvModule whose output is its conv's (no activation, BN folded)."""
    if not isinstance(module, ConvModule) or module.with_activation:
        return False
    return not module.with_norm or isinstance(module.norm, nn.Identity)


def add_output_quantizers(model: nn.Module, qcfg: QuantConfig) -> list[str]:
    """Puts the output quantizers on a quantized detector (after ``quantize_model``); returns their
    module names, in module order."""
    backbone = _backbone(model)
    convs = _relu_convs(backbone)
    added = [f"backbone.{name}.output_quantizer" for name, conv, _ in convs if _add_output(conv, qcfg)]
    for name, block in _blocks(backbone):
        last = block.conv3 if isinstance(block, Bottleneck) else block.conv2
        if isinstance(last, QuantLayer):
            block.output_quantizer = _output_quantizer(qcfg, int(last.out_channels))
            block.__class__ = _quantized_block(type(block))
            added.append(f"backbone.{name}.output_quantizer")
    neck = _neck(model)
    for i, lateral in enumerate(neck.lateral_convs if neck is not None else []):
        if not _conv_only(lateral):
            raise _refuse(f"neck.lateral_convs.{i} has a norm or an activation after its conv")
        if _add_output(lateral.conv, qcfg):
            added.append(f"neck.lateral_convs.{i}.conv.output_quantizer")
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(added, key=order.__getitem__)
