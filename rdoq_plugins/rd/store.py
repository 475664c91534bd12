"""RD curves on disk: one file per (layer, kind) under a folder named after the config's hash.

A crashed or repeated run reuses every curve already written; files are written atomically, so a
half-written curve never exists. Ranks of a distributed run write disjoint layers into the same
folder.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from rdoq_plugins.rd.curve import LayerCurve, TensorKind


class CurveStore:
    """``root/<hash>/<layer>.<kind>.pth`` files."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = Path(root) / key

    def path(self, layer: str, kind: TensorKind) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer)
        return self.dir / f"{safe}.{kind.value}.pth"

    def has(self, layer: str, kind: TensorKind) -> bool:
        return self.path(layer, kind).is_file()

    def save(self, curve: LayerCurve) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.path(curve.layer, curve.kind)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".pth")
        os.close(fd)
        try:
            torch.save(curve.state(), tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load(self, layer: str, kind: TensorKind) -> LayerCurve:
        return LayerCurve.from_state(torch.load(self.path(layer, kind), map_location="cpu", weights_only=True))

    def missing(self, keys: list[tuple[str, TensorKind]]) -> list[tuple[str, TensorKind]]:
        """The ``(layer, kind)`` keys that have no curve here yet."""
        return [key for key in keys if not self.has(*key)]
