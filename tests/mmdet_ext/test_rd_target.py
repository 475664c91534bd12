"""RDOQ's distortion target sees class outputs as scores: real mmdet heads, sigmoid and softmax."""
from __future__ import annotations

from pathlib import Path

import torch
from mmdet.models import build_head

from mmdet_ext.rd_target import dense_scores, roi_scores
from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.workflow.curves import curve_folder

FEATS = [torch.randn(1, 8, 6, 6), torch.randn(1, 8, 3, 3)]


def _anchor_head(use_sigmoid: bool) -> torch.nn.Module:
    return build_head(dict(type="RPNHead", in_channels=8, feat_channels=8,
                           anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                                 strides=[4, 8]),
                           loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=use_sigmoid, loss_weight=1.0)))


def test_sigmoid_heads_give_probabilities() -> None:
    head = _anchor_head(use_sigmoid=True)
    cls, _ = head(FEATS)
    scores = dense_scores(head, cls)
    assert all(torch.allclose(s, c.sigmoid()) for s, c in zip(scores, cls))


def test_softmax_heads_normalise_each_anchor() -> None:
    head = _anchor_head(use_sigmoid=False)
    cls, _ = head(FEATS)
    assert head.cls_out_channels == 2
    for s, c in zip(dense_scores(head, cls), cls):
        assert s.shape == c.shape and (s >= 0).all()
        per_anchor = s.unflatten(1, (3, 2)).sum(2)  # 3 anchors x 2 classes per position
        assert torch.allclose(per_anchor, torch.ones_like(per_anchor))


def test_roi_scores_follow_the_bbox_heads_softmax() -> None:
    head = build_head(dict(type="Shared2FCBBoxHead", in_channels=8, fc_out_channels=16, roi_feat_size=2,
                           num_classes=3))
    cls, _ = head(torch.randn(5, 8, 2, 2))
    scores = roi_scores(head, cls)
    assert torch.allclose(scores.sum(-1), torch.ones(5)) and torch.equal(scores.argmax(-1), cls.argmax(-1))


def test_scores_and_logits_keep_separate_curves(tmp_path: Path) -> None:
    cfg = RDOQConfig()
    assert curve_folder(tmp_path, cfg, "d", "scores").dir != curve_folder(tmp_path, cfg, "d", "").dir
