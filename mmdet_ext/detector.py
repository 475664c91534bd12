"""The mmdet 2.x detector adapter: what is quantized, the reconstruction units, and how a batch runs.

Beyond the official QDrop detection code (backbone + FPN only), every weighted layer is quantized
by default: the ResNet stem and blocks, FPN lateral / output / extra convs, and the heads (RPN head,
RoI bbox head FCs and predictors, RetinaHead towers and predictors). By default
(``a_qconfig.position: input``) every such layer quantizes its input, so each tensor an integer
kernel reads, the FPN outputs the heads consume included, is on a low-bit grid; residual adds stay
FP as in QDrop. ``output`` places the backbone and FPN quantizers where the official code does
(:mod:`mmdet_ext.act_placement`). Each head can be left FP with ``heads``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from mmcv.cnn import ConvModule
from mmcv.parallel import DataContainer, scatter
from mmdet.core import bbox2roi
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor, nn

from mmdet_ext.act_placement import add_output_quantizers, fuse_for_placement, output_positions
from mmdet_ext.head_levels import split_head_levels
from mmdet_ext.rd_target import dense_scores, roi_scores
from rdoq_plugins import ActPosition, QuantConfig, QuantLayer, quantize_model
from rdoq_plugins.config import ConfigError
from rdoq_plugins.config.placement import Placement
from rdoq_plugins.memory import release_free_memory

# A ConvModule (conv, folded norm, activation) is one unit so its error is measured after the ReLU, as
# QDrop's fused conv + ReLU layers are; a RetinaHead tower conv alone would be fitted on pre-ReLU
# outputs that the ReLU discards (bundled RetinaNet, QDrop W4A4 with the head reconstructed: 0.585
# per conv, 0.614 per ConvModule).
BLOCK_TYPES: tuple[type[nn.Module], ...] = (Bottleneck, BasicBlock, ConvModule)
HEAD_NAMES = ("rpn_head", "roi_head", "bbox_head")


def model_heads(model: nn.Module) -> list[str]:
    """The head modules ``model`` has, among ``rpn_head``, ``roi_head`` and ``bbox_head``."""
    return [h for h in HEAD_NAMES if getattr(model, h, None) is not None]


def check_heads(model: nn.Module, heads: Mapping[str, Any] | bool) -> dict[str, bool]:
    """Validates the ``heads`` switch against the model: ``{head_name: quantize?}``. A bool sets
    every head the detector has (``False``: QDrop's detection protocol, heads FP)."""
    present = model_heads(model)
    if isinstance(heads, bool):
        return {h: heads for h in present}
    if not isinstance(heads, Mapping):
        raise ConfigError("heads", "expected a bool or a dict of head names", heads,
                          f"true, false or a dict with keys among {', '.join(present)}")
    out = {h: True for h in present}
    for name, on in heads.items():
        if name not in present:
            raise ConfigError(f"heads.{name}", "this detector has no such head", name, ", ".join(present))
        if not isinstance(on, bool):
            raise ConfigError(f"heads.{name}", "expected a boolean", on, "true, false")
        out[name] = on
    return out


def quantize_detector(model: nn.Module, qcfg: QuantConfig, heads: Mapping[str, bool],
                      check: bool = True) -> dict[str, QuantLayer]:
    """Swaps the detector's layers for quantized ones (BN must be folded already); with the
    ``per_level_act`` key, dense heads get one input quantizer per FPN level; with
    ``a_qconfig.position: output`` the backbone and FPN get output quantizers instead of input ones
    (:mod:`mmdet_ext.act_placement`). ``check``: an override that names no layer of the detector is
    an error (off for a stored config)."""
    off = tuple(f"{h}." for h, on in heads.items() if not on)
    output = qcfg.a_qconfig.position is Placement.OUTPUT
    fuse_for_placement(model, qcfg)
    position = output_positions(model, qcfg) if output else ActPosition.INPUT
    wrapped = quantize_model(model, qcfg, position, include=lambda name, _: not name.startswith(off), check=check)
    if not wrapped:
        raise ConfigError("overrides", "no layer of the model is left to quantize", dict(heads))
    if output:
        add_output_quantizers(model, qcfg)
    if qcfg.extra.get("per_level_act", False):  # absent in quantized checkpoints from before the key
        split_head_levels(model, heads)
    return wrapped


def detector_units(model: nn.Module) -> list[str]:
    """Reconstruction units: ResNet blocks, mmcv ConvModules (conv + activation), and every other
    quantized layer alone, in registration order (sort them by :func:`rdoq_plugins.recon.call_order`
    for forward order)."""
    units: list[str] = []
    inside: tuple[str, ...] = ()
    for name, module in model.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(module, BLOCK_TYPES) and any(isinstance(m, QuantLayer) for m in module.modules()):
            units.append(name)
            inside = (name + ".",)
        elif isinstance(module, QuantLayer):
            units.append(name)
    return units


def unpack(batch: Mapping[str, Any], device: torch.device) -> tuple[Tensor, list[dict[str, Any]]]:
    """``(img, img_metas)`` of a collated batch from mmdet's train or test pipeline."""
    target = [-1] if device.type == "cpu" else [device.index or 0]
    data = scatter(dict(batch), target)[0]
    img, metas = data["img"], data["img_metas"]
    if isinstance(img, list):  # test pipeline: one entry per augmentation
        img, metas = img[0], metas[0]
    if isinstance(metas, DataContainer):
        metas = metas.data[0]
    return img, metas


class DetectorAdapter:
    """The workflow's :class:`~rdoq_plugins.workflow.ModelAdapter` for an mmdet 2.x detector:
    features, then the heads' forward, without post-processing.

    Two-stage detectors see the proposals of the FP model (kept per batch), so quantized and FP
    RoI features describe the same boxes and their errors can be compared sample by sample.
    """

    unit_io = None

    def __init__(self, fp_model: nn.Module, device: torch.device, batches: list[Mapping[str, Any]],
                 scores: bool = True) -> None:
        self.device = device
        self.scores = scores
        self.target_tag = "scores" if scores else ""  # keys the stored RD curves
        self._proposals: dict[int, list[Tensor]] = {}
        if getattr(fp_model, "roi_head", None) is not None:
            with torch.no_grad():
                for batch in batches:  # before any capture hook is set on the FP model
                    img, metas = unpack(batch, device)
                    feats = fp_model.extract_feat(img)
                    self._proposals[id(batch)] = fp_model.rpn_head.simple_test_rpn(feats, metas)
                    del feats, img
                    release_free_memory()

    def units(self, model: nn.Module) -> list[str]:
        return detector_units(model)

    def images(self, batch: Mapping[str, Any]) -> int:
        """The number of images in ``batch``."""
        return len(unpack(batch, torch.device("cpu"))[1])

    def targets(self, model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
        """RDOQ's distortion target: every FPN level and every head output (RPN and RoI head
        scores and deltas with the FP proposals, or RetinaHead's), so every quantized layer is seen.
        Class outputs are scores unless ``scores`` is off (:mod:`mmdet_ext.rd_target`)."""
        img, _ = unpack(batch, self.device)
        feats = model.extract_feat(img)
        outs: list[Tensor] = list(feats)
        two_stage = getattr(model, "roi_head", None) is not None
        dense = model.rpn_head if two_stage else model.bbox_head
        cls, reg = dense(feats)
        if self.scores:
            cls = dense_scores(dense, cls)
        if not two_stage:
            return [*outs, *cls, *reg]
        result = model.roi_head._bbox_forward(feats, bbox2roi(self._proposals[id(batch)]))
        roi_cls = result["cls_score"]
        if self.scores:
            roi_cls = roi_scores(model.roi_head.bbox_head, roi_cls)
        return [*outs, *cls, *reg, roi_cls, result["bbox_pred"]]

    def run(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        """Features, then the dense head (and the RoI head on the FP proposals)."""
        img, _ = unpack(batch, self.device)
        feats = model.extract_feat(img)
        if getattr(model, "roi_head", None) is not None:
            model.rpn_head(feats)
            rois = bbox2roi(self._proposals[id(batch)])
            return model.roi_head._bbox_forward(feats, rois)
        return model.bbox_head(feats)
