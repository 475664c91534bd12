"""Known harmless warnings that every tool run prints on a machine without a GPU, filtered there.

torch's ``No CUDA runtime is found, using CUDA_HOME=...`` is logged by ``torch.utils.cpp_extension``
when it is imported on a machine with CUDA files but no GPU (framework packages import it). An
adapter adds the warnings of its own framework (``warning_filters``: a message regex, matched at the
start, and the module that warns). :func:`quiet_cpu_warnings` filters exactly these, and only when
no GPU is available; the adapters' packages call it before they import their framework, so it runs
first in every tool.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch

NO_CUDA_LOGGER = "torch.utils.cpp_extension"
NO_CUDA_PREFIX = "No CUDA runtime is found"


def _not_no_cuda(record: logging.LogRecord) -> bool:
    """False for torch's "No CUDA runtime is found" record (dropped), True for any other."""
    return not str(record.msg).startswith(NO_CUDA_PREFIX)


def quiet_cpu_warnings(warning_filters: Sequence[tuple[str, str]] = ()) -> bool:
    """Filters torch's no-CUDA line and ``warning_filters`` (``(message regex, module)`` pairs of
    ``UserWarning``) when no GPU is available; returns whether it did. Calling it again adds nothing."""
    if torch.cuda.is_available():
        return False
    logging.getLogger(NO_CUDA_LOGGER).addFilter(_not_no_cuda)  # a logger keeps one copy of a filter
    for message, module in warning_filters:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
    return True
