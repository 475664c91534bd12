"""Known harmless warnings that every tool run prints on a machine without a GPU, filtered there.

Two messages, both printed while mmcv (or another package) is imported:

- torch's ``No CUDA runtime is found, using CUDA_HOME=...`` (``torch.utils.cpp_extension`` logs it
  when imported on a machine with CUDA files but no GPU; mmcv imports it);
- mmcv's ``On January 1, 2023, MMCV will release v2.0.0 ...`` deprecation ``UserWarning``.

:func:`quiet_cpu_warnings` filters exactly these, and only when no GPU is available; the adapters'
packages call it before they import mmcv or OpenPCDet, so it runs first in every tool.
"""
from __future__ import annotations

import logging
import warnings

import torch

NO_CUDA_LOGGER = "torch.utils.cpp_extension"
NO_CUDA_PREFIX = "No CUDA runtime is found"
MMCV_MESSAGE = r"On January 1, 2023, MMCV will release v2\.0\.0"  # a regex, matched at the start


def _not_no_cuda(record: logging.LogRecord) -> bool:
    """False for torch's "No CUDA runtime is found" record (dropped), True for any other."""
    return not str(record.msg).startswith(NO_CUDA_PREFIX)


def quiet_cpu_warnings() -> bool:
    """Filters the two known harmless messages when no GPU is available; returns whether it did.
    Calling it again adds nothing."""
    if torch.cuda.is_available():
        return False
    logging.getLogger(NO_CUDA_LOGGER).addFilter(_not_no_cuda)  # a logger keeps one copy of a filter
    warnings.filterwarnings("ignore", message=MMCV_MESSAGE, category=UserWarning, module="mmcv")
    return True
