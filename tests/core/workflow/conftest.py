"""A small CNN behind the workflow's adapter protocol, and a session factory."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rdoq_plugins import QuantLayer, load_quant_config, quantize_model
from rdoq_plugins.workflow import Session


class TinyAdapter:
    """Runs an ``nn.Sequential`` on tensor batches; every quantized layer is a unit."""

    unit_io = None
    target_tag = ""

    def run(self, model: nn.Module, batch: Tensor) -> Tensor:
        return model(batch)

    def targets(self, model: nn.Module, batch: Tensor) -> Sequence[Tensor]:
        return [model(batch)]

    def images(self, batch: Tensor) -> int:
        return int(batch.shape[0])

    def units(self, model: nn.Module) -> list[str]:
        return [n for n, m in model.named_modules() if isinstance(m, QuantLayer)]


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 4, 1)).eval()


MakeSession = Callable[..., Session]


@pytest.fixture
def make_session(tmp_path: Path) -> MakeSession:
    def make(config: dict[str, Any], work_dir: Path | None = None, run_hash: str = "run") -> Session:
        fp = tiny_model()
        for p in fp.parameters():
            p.requires_grad_(False)
        model = copy.deepcopy(fp)
        qcfg = load_quant_config(config)
        quantize_model(model, qcfg)
        batches = list(torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1)).split(2))
        return Session(model=model, fp_model=fp, qcfg=qcfg, adapter=TinyAdapter(), batches=batches,
                       work_dir=work_dir or tmp_path / "work", device=torch.device("cpu"), run_hash=run_hash,
                       data_hash="tiny", show_progress=False)

    return make
