"""The known harmless warnings of a CPU machine (torch's "No CUDA runtime is found", and those an
adapter names, e.g. mmcv's 2.0 notice) are filtered, exactly those and only when no GPU is available."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest
import torch

from rdoq_plugins import quiet
from rdoq_plugins.quiet import NO_CUDA_LOGGER, quiet_cpu_warnings

NOTICE = (r"On January 1, 2023, MMCV will release v2\.0\.0", "mmcv")  # as mmdet_ext passes it
MMCV_TEXT = ("On January 1, 2023, MMCV will release v2.0.0, in which it will remove components related to the "
             "training process and add a data transformation module.")


@pytest.fixture
def restored() -> Iterator[None]:
    """Every warning shown (not pytest's filters), then the warning and logger filters as they were."""
    logger = logging.getLogger(NO_CUDA_LOGGER)
    filters = list(logger.filters)
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        yield
    logger.filters[:] = filters


def _warn(text: str, module: str) -> list[str]:
    """The warnings shown when ``module`` warns ``text``."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(text, UserWarning, f"{module}/__init__.py", 20, module=module)
    return [str(w.message) for w in seen]


def test_on_cpu_exactly_the_two_messages_are_filtered(restored: None, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quiet_cpu_warnings([NOTICE]) and quiet_cpu_warnings([NOTICE])
    assert logging.getLogger(NO_CUDA_LOGGER).filters.count(quiet._not_no_cuda) == 1
    with caplog.at_level(logging.WARNING, logger=NO_CUDA_LOGGER):
        logging.getLogger(NO_CUDA_LOGGER).warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        logging.getLogger(NO_CUDA_LOGGER).warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
    assert _warn(MMCV_TEXT, "mmcv") == []
    assert _warn(MMCV_TEXT, "somewhere_else") == [MMCV_TEXT]  # the same text from another module
    assert _warn("another mmcv warning", "mmcv") == ["another mmcv warning"]


def test_with_a_gpu_nothing_is_filtered(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = list(logging.getLogger(NO_CUDA_LOGGER).filters)
    assert not quiet_cpu_warnings([NOTICE])
    assert logging.getLogger(NO_CUDA_LOGGER).filters == before
    assert _warn(MMCV_TEXT, "mmcv") == [MMCV_TEXT]
