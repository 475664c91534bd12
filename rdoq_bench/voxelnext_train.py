"""Training of the VoxelNeXt-shaped toy on CPU: CenterPoint-style targets on the sparse BEV sites
(Gaussian heatmaps; at the site nearest each GT center, the box regression), the focal heatmap
loss + L1 box loss, and a short AdamW / one-cycle loop (:func:`train_toy`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_bench.voxelnext_model import FEATURE_STRIDE, HEAD_DICT, VOXEL_SIZE, head_class_ids, site_centers
from rdoq_bench.voxelnext_scenes import Scene, collate


def assign_targets(voxel_indices: Tensor, gt_boxes: Tensor) -> list[dict[str, Tensor]]:
    """Per head: Gaussian heatmaps over the sparse sites and, at the site nearest each GT center,
    regression targets (center offset in cells, z, log dims, sin / cos yaw)."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    centers = site_centers(voxel_indices)
    batch_idx = voxel_indices[:, 0].long()
    out = []
    for ids in head_class_ids():
        hm = centers.new_zeros(len(centers), len(ids))
        inds, boxes = [], []
        for b in range(gt_boxes.shape[0]):
            sites = torch.nonzero(batch_idx == b).squeeze(1)
            if len(sites) == 0:
                continue
            for box in gt_boxes[b]:
                label = int(box[7]) - 1
                if label < 0 or label not in ids:
                    continue
                d2 = (centers[sites] - box[:2]).pow(2).sum(1)
                sigma = max(0.5 * cell, float(box[3:5].min()) / 3)
                k = ids.index(label)
                hm[sites, k] = torch.maximum(hm[sites, k], torch.exp(-d2 / (2 * sigma**2)))
                nearest = sites[d2.argmin()]
                hm[nearest, k] = 1.0
                inds.append(int(nearest))
                boxes.append(box)
        ind = torch.tensor(inds, dtype=torch.long)
        box_t = torch.stack(boxes) if boxes else centers.new_zeros(0, 8)
        reg = {
            "center": (box_t[:, :2] - centers[ind]) / cell,
            "center_z": box_t[:, 2:3],
            "dim": box_t[:, 3:6].clamp(min=1e-3).log(),
            "rot": torch.stack([box_t[:, 6].sin(), box_t[:, 6].cos()], dim=1),
        }
        out.append({"hm": hm, "inds": ind, **reg})
    return out


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalized by the number of positives."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -(p.log() * (1 - p).pow(2) * pos).sum()
    neg_loss = -((1 - p).log() * p.pow(2) * (1 - target).pow(4) * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def detection_loss(out: dict[str, Any], gt_boxes: Tensor) -> Tensor:
    targets = assign_targets(out["voxel_indices"], gt_boxes)
    loss = out["voxel_indices"].new_zeros((), dtype=torch.float32)
    for pred, tgt in zip(out["pred_dicts"], targets):
        loss = loss + focal_loss(pred["hm"], tgt["hm"])
        if len(tgt["inds"]):
            for key in HEAD_DICT:
                loss = loss + 0.25 * (pred[key][tgt["inds"]] - tgt[key]).abs().mean()
    return loss


def train_toy(model: nn.Module, scenes: Sequence[Scene], steps: int, batch_size: int = 2, lr: float = 3e-3,
              seed: int = 0, log_every: int = 0) -> list[float]:
    """Adam with a cosine schedule on random batches of ``scenes``; returns the losses; eval mode after.

    Call ``pcdet_ext.apply_cpu_patches()`` first on a machine without CUDA.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.3)
    model.train()
    losses = []
    for step in range(steps):
        pick = torch.randperm(len(scenes), generator=gen)[:batch_size].tolist()
        batch = collate([scenes[i] for i in pick])
        loss = detection_loss(model(batch), batch["gt_boxes"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}: loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
    model.eval()
    return losses

