"""ONNX export of a quantized mmdet 2.x detector, split as mmdeploy splits it: the network up to the
raw head outputs runs in ONNX; anchors, box decoding, RoI extraction and NMS stay in mmdet.

* ``model.onnx``: backbone + neck + dense head (RetinaHead / RPN head) -> per-level class scores and
  box deltas (a two-stage detector also outputs the FPN levels, which its RoI head reads).
* ``roi_head.onnx`` (two-stage only): the RoI box head from RoI features ``[N, C, 7, 7]`` -> class
  scores and box deltas.

Every quantizer becomes Q/DQ nodes with the model's integers
(:mod:`rdoq_plugins.export.onnx_qdq`); :func:`onnxruntime_detector` puts the exported networks in
place of the PyTorch ones so mmdet's own post-processing and evaluation run on their outputs.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from mmdet.core import bbox2roi
from torch import Tensor, nn

from rdoq_plugins.export.onnx_qdq import Exported, export_qdq
from rdoq_plugins.export.ort_session import exact_session


def is_two_stage(det: nn.Module) -> bool:
    return getattr(det, "roi_head", None) is not None and getattr(det, "rpn_head", None) is not None


def dense_head(det: nn.Module) -> nn.Module:
    """The head that runs on the FPN levels: the RPN of a two-stage detector, else the bbox head."""
    return det.rpn_head if is_two_stage(det) else det.bbox_head


class DenseNetwork(nn.Module):
    """``img -> (*levels (two-stage only), *cls_scores, *bbox_preds)``."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det

    def forward(self, img: Tensor) -> tuple[Tensor, ...]:
        feats = self.det.extract_feat(img)
        cls_scores, bbox_preds = dense_head(self.det)(feats)
        levels = tuple(feats) if is_two_stage(self.det) else ()
        return (*levels, *cls_scores, *bbox_preds)


class RoIBoxNetwork(nn.Module):
    """``RoI features -> (cls_score, bbox_pred)`` of a two-stage detector's box head."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det

    def forward(self, roi_feats: Tensor) -> tuple[Tensor, Tensor]:
        cls_score, bbox_pred = self.det.roi_head.bbox_head(roi_feats)
        return cls_score, bbox_pred


@dataclass
class Graph:
    """One exported network: its wrapper, input name and the Q/DQ export."""

    name: str
    module: nn.Module
    input_name: str
    exported: Exported


def num_levels(det: nn.Module) -> int:
    return len(dense_head(det).prior_generator.strides)


@torch.no_grad()
def roi_features(det: nn.Module, img: Tensor, img_metas: list[dict[str, Any]]) -> Tensor:
    """The RoI features the box head reads for ``img`` (proposals of the fake-quantized RPN)."""
    feats = det.extract_feat(img)
    proposals = det.rpn_head.simple_test_rpn(feats, img_metas)
    extractor = det.roi_head.bbox_roi_extractor
    return extractor(feats[:extractor.num_inputs], bbox2roi(proposals))


def export_detector(det: nn.Module, img: Tensor, img_metas: list[dict[str, Any]], probe: bool = False) -> list[Graph]:
    """Exports ``det`` (quantized, eval mode, CPU) traced on ``img``; H, W and the RoI count are dynamic."""
    det.eval()
    n = num_levels(det)
    heads = [f"cls_score_{i}" for i in range(n)] + [f"bbox_pred_{i}" for i in range(n)]
    names = ([f"level_{i}" for i in range(n)] if is_two_stage(det) else []) + heads
    dense = DenseNetwork(det)
    graphs = [Graph("model", dense, "img", export_qdq(
        dense, (img,), det, ["img"], names, probe=probe, dynamic_axes={"img": {2: "height", 3: "width"}}))]
    if is_two_stage(det):
        box = RoIBoxNetwork(det)
        feats = roi_features(det, img, img_metas)
        graphs.append(Graph("roi_head", box, "roi_feats", export_qdq(
            box, (feats,), det, ["roi_feats"], ["cls_score", "bbox_pred"], probe=probe,
            dynamic_axes={"roi_feats": {0: "rois"}, "cls_score": {0: "rois"}, "bbox_pred": {0: "rois"}})))
    return graphs


def graph_inputs(det: nn.Module, graph: Graph, batches: Sequence[tuple[Tensor, list[dict[str, Any]]]]) -> list[tuple[Tensor]]:
    """The inputs of ``graph`` for each ``(img, img_metas)``: the image, or the RoI features."""
    if graph.name == "model":
        return [(img,) for img, _ in batches]
    return [(roi_features(det, img, metas),) for img, metas in batches]


def session(model_bytes: bytes) -> Any:
    """A CPU session that computes what the graph says (:mod:`rdoq_plugins.export.ort_session`), on
    as many threads as torch uses (``OMP_NUM_THREADS``)."""
    return exact_session(model_bytes, torch.get_num_threads())


@contextmanager
def onnxruntime_detector(det: nn.Module, sessions: dict[str, Any]) -> Iterator[nn.Module]:
    """``det`` with its networks run by onnxruntime ``sessions`` (``{"model", "roi_head"?}``); mmdet's
    test-time code (anchors, decoding, RoI extraction, NMS) is unchanged."""
    n, two = num_levels(det), is_two_stage(det)
    head = dense_head(det)
    stash: dict[str, Any] = {}

    def extract_feat(img: Tensor) -> list[Tensor]:
        outs = [torch.from_numpy(o) for o in sessions["model"].run(None, {"img": img.cpu().numpy()})]
        levels, rest = (outs[:n], outs[n:]) if two else ([torch.zeros(0)] * n, outs)
        stash["head"] = (rest[:n], rest[n:2 * n])
        return levels

    def head_forward(feats: Any) -> Any:
        return stash.pop("head")

    def box_forward(roi_feats: Tensor) -> tuple[Tensor, Tensor]:
        cls, reg = sessions["roi_head"].run(None, {"roi_feats": roi_feats.cpu().numpy()})
        return torch.from_numpy(cls), torch.from_numpy(reg)

    patched = [(det, "extract_feat", extract_feat), (head, "forward", head_forward)]
    if two:
        patched.append((det.roi_head.bbox_head, "forward", box_forward))
    for module, attr, fn in patched:
        module.__dict__[attr] = fn
    try:
        yield det
    finally:
        for module, attr, _ in patched:
            module.__dict__.pop(attr, None)
