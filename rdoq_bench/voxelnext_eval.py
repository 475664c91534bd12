"""Decoding and the BEV detection metric of the VoxelNeXt-shaped toy: heatmap peaks -> centers
with center-distance NMS (:func:`decode`), matched to GT centers by BEV distance, AP per class
averaged over distance thresholds, mean over classes (:func:`bev_map`, :func:`evaluate`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdoq_bench.voxelnext_model import CLASS_NAMES, FEATURE_STRIDE, VOXEL_SIZE, head_class_ids, site_centers
from rdoq_bench.voxelnext_scenes import Scene, batches_of

NMS_RADIUS = {"car": 2.0, "truck": 3.0, "pedestrian": 0.7}


@torch.no_grad()
def decode(out: dict[str, Any], score_thresh: float = 0.05, max_per_class: int = 50) -> list[list[dict[str, Any]]]:
    """Detections per batch item: ``{"label", "score", "center"}`` (label 1-based, BEV center in m),
    from heatmap peaks with center-distance NMS."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    centers = site_centers(out["voxel_indices"])
    batch_idx = out["voxel_indices"][:, 0].long()
    dets: list[list[dict[str, Any]]] = [[] for _ in range(out["batch_size"])]
    for pred, ids in zip(out["pred_dicts"], head_class_ids()):
        scores = pred["hm"].float().sigmoid()
        xy = centers + pred["center"].float() * cell
        for k, cls in enumerate(ids):
            for b in range(out["batch_size"]):
                sel = torch.nonzero((batch_idx == b) & (scores[:, k] > score_thresh)).squeeze(1)
                order = sel[scores[sel, k].argsort(descending=True)]
                kept: list[int] = []
                for i in order.tolist():
                    if all(float((xy[i] - xy[j]).norm()) > NMS_RADIUS[CLASS_NAMES[cls]] for j in kept):
                        kept.append(i)
                        if len(kept) >= max_per_class:
                            break
                dets[b].extend({"label": cls + 1, "score": float(scores[i, k]), "center": xy[i].tolist()} for i in kept)
    return dets


def average_precision(scores: Sequence[float], matched: Sequence[bool], num_gt: int) -> float:
    """Area under the precision envelope (all-point interpolation)."""
    if num_gt == 0:
        return math.nan
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(matched, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))


def bev_map(detections: Sequence[Sequence[dict[str, Any]]], gt_boxes: Sequence[Tensor],
            thresholds: Sequence[float] = (0.5, 1.0, 2.0)) -> dict[str, Any]:
    """Center-distance AP per class (nuScenes-style matching: by score, to the nearest unmatched GT
    of the class within the threshold), averaged over ``thresholds``; ``mAP`` is the class mean."""
    ap: dict[str, float] = {}
    for c, name in enumerate(CLASS_NAMES, start=1):
        per_thresh = []
        for thr in thresholds:
            scores, matched, num_gt = [], [], 0
            for dets, gt in zip(detections, gt_boxes):
                g = gt[gt[:, 7] == c, :2]
                num_gt += len(g)
                used = torch.zeros(len(g), dtype=torch.bool)
                for d in sorted((d for d in dets if d["label"] == c), key=lambda d: -d["score"]):
                    hit = False
                    if len(g):
                        dist = (g - torch.tensor(d["center"])).norm(dim=1)
                        dist[used] = math.inf
                        j = int(dist.argmin())
                        if float(dist[j]) <= thr:
                            used[j] = True
                            hit = True
                    scores.append(d["score"])
                    matched.append(hit)
            per_thresh.append(average_precision(scores, matched, num_gt))
        ap[name] = float(np.nanmean(per_thresh)) if not all(math.isnan(a) for a in per_thresh) else math.nan
    values = [v for v in ap.values() if not math.isnan(v)]
    return {"mAP": float(np.mean(values)) if values else math.nan, "AP": ap}


@torch.no_grad()
def evaluate(model: nn.Module, scenes: Sequence[Scene], batch_size: int = 2) -> dict[str, Any]:
    """The BEV metric of ``model`` on ``scenes``."""
    model.eval()
    dets: list[list[dict[str, Any]]] = []
    for batch in batches_of(scenes, batch_size):
        dets.extend(decode(model(batch)))
    return bev_map(dets, [s.gt_boxes for s in scenes])
