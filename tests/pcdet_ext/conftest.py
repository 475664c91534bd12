"""pcdet_ext tests: spconv's CPU patches on, and torch on one thread (the shared cores make
multi-threaded spconv slow and erratic)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pcdet_ext = pytest.importorskip("pcdet_ext", reason="pcdet_ext needs spconv")


@pytest.fixture(autouse=True)
def _cpu_one_thread() -> Iterator[None]:
    pcdet_ext.apply_cpu_patches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
