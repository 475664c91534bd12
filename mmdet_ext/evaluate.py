"""The test loop of an mmdet run: inference over the test loader on every rank, then
``dataset.evaluate`` on rank 0, as mmdet's ``tools/test.py``."""
from __future__ import annotations

import time
from typing import Any

import torch
from mmcv.parallel import scatter
from torch import nn
from tqdm import tqdm

from mmdet_ext.dist import gather_results, rank_and_world
from mmdet_ext.prepare import Prepared


@torch.no_grad()
def inference(model: nn.Module, loader: Any, device: torch.device, desc: str) -> list[Any]:
    """Runs the detector over the test loader; all ranks' results in dataset order."""
    model.eval()
    rank, _ = rank_and_world()
    target = [-1] if device.type == "cpu" else [device.index or 0]
    results: list[Any] = []
    for data in tqdm(loader, desc=desc, disable=rank != 0, mininterval=2.0):
        data = scatter(data, target)[0]
        results.extend(model(return_loss=False, rescale=True, **data))
    return gather_results(results, len(loader.dataset))


def evaluate(prep: Prepared, model: nn.Module, desc: str, metrics: list[str]) -> tuple[dict[str, float], float]:
    """``dataset.evaluate`` on rank 0 (other ranks get an empty dict), and the time it took."""
    start = time.time()
    outputs = inference(model, prep.test_loader, prep.device, desc)
    result: dict[str, float] = {}
    if prep.rank == 0:
        kwargs = {k: v for k, v in prep.cfg.get("evaluation", {}).items()
                  if k not in ("interval", "tmpdir", "start", "gpu_collect", "save_best", "rule", "dynamic_intervals")}
        kwargs["metric"] = metrics
        result = {k: float(v) for k, v in prep.test_dataset.evaluate(outputs, **kwargs).items()
                  if isinstance(v, (int, float))}
        if not result:  # mmdet prints "results empty" and returns nothing when no box was detected
            raise RuntimeError(f"{desc}: the evaluation gave no metrics, the model detected nothing on the "
                               f"{len(outputs)} test images (its outputs may be NaN); no report is written")
    return result, time.time() - start
