"""The test loop of an OpenPCDet run: OpenPCDet's ``eval_utils.eval_one_epoch`` (from its
``tools/``), on any device."""
from __future__ import annotations

import numbers
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from pcdet_ext.detector import load_data_to_device
from pcdet_ext.prepare import Prepared

EVAL_SEED = 1024  # OpenPCDet's test.py seeds numpy with it


def evaluate(prep: Prepared, model: nn.Module, tag: str) -> dict[str, float]:
    """OpenPCDet's ``eval_one_epoch`` on the test split (results under ``work_dir/eval/<tag>``);
    the numeric metrics as it returns them (non-numeric entries dropped; rank 0, the others get
    ``{}``)."""
    if prep.test_loader is None:
        raise ValueError("no test split was prepared")
    eval_utils = prep.pcdet.eval_utils
    device = prep.device
    if device.type != "cuda":  # OpenPCDet's load_data_to_gpu calls .cuda()
        eval_utils.load_data_to_gpu = lambda batch: load_data_to_device(batch, device)
    if prep.world > 1:  # eval_one_epoch wraps the model in DDP, which wants a parameter with grad
        for p in model.parameters():
            p.requires_grad_(True)
    eval_args = SimpleNamespace(save_to_file=prep.save_to_file, infer_time=False)
    np.random.seed(EVAL_SEED)  # test-time point shuffling: the same for the FP and the quantized model
    start = time.time()
    with torch.no_grad():
        ret = eval_utils.eval_one_epoch(prep.cfg, eval_args, model, prep.test_loader, tag, prep.pcdet_logger,
                                        dist_test=prep.world > 1, result_dir=prep.work_dir / "eval" / tag)
    prep.timings[f"eval_{tag}"] = time.time() - start
    metrics = {str(k): float(v) for k, v in (ret or {}).items()
               if isinstance(v, numbers.Real) and not isinstance(v, bool)}
    if prep.rank == 0 and not metrics:
        raise RuntimeError(f"evaluating the {tag} model gave no metrics (its outputs may be NaN); "
                           "no report is written")
    return metrics
