"""What reconstruction reads: a unit's inputs and targets, bounded in memory.

QDrop (Wei et al., ICLR 2022) caches, for every calibration batch, the unit's input in the quantized
model, its input in the FP model and its FP output. At 1333x800 this is ~0.33 GB per 2-image batch
at ResNet's layer1, which runs the official code out of memory. :class:`ChunkCache` keeps chunks on
the compute device or in CPU memory up to a byte budget and spills the rest to files on disk.

A *chunk* is what one call of the unit saw: ``(quant_in, fp_in, fp_out)`` with the sample on dim 0.
Units called once per forward (backbone blocks) give chunks of one shape, which are sampled image by
image; units called once per pyramid level (shared head convs) give chunks of several shapes, and a
step then draws its images from one chunk. A chunk added with a *context* (the structure of a
sparse unit's call, see :mod:`rdoq_plugins.recon.unit_io`) is one sample: it is drawn whole, and
its context is counted in the budget and spilled with it.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

Chunk = tuple[Tensor, Tensor, Tensor]


class UnitCache(Protocol):
    """Random batches of ``(quant_in, fp_in, fp_out)``."""

    def __len__(self) -> int: ...

    def sample(self, batch_size: int, generator: torch.Generator) -> Chunk: ...


class TensorCache:
    """A :class:`UnitCache` over three tensors whose first dimension is the sample."""

    def __init__(self, quant_in: Tensor, fp_in: Tensor, fp_out: Tensor) -> None:
        n = {len(quant_in), len(fp_in), len(fp_out)}
        if len(n) != 1:
            raise ValueError(f"cached tensors disagree on the number of samples: {sorted(n)}")
        self.quant_in, self.fp_in, self.fp_out = quant_in, fp_in, fp_out

    def __len__(self) -> int:
        return len(self.quant_in)

    def sample(self, batch_size: int, generator: torch.Generator) -> Chunk:
        idx = torch.randint(len(self), (batch_size,), generator=generator).to(self.quant_in.device)
        return self.quant_in[idx], self.fp_in[idx], self.fp_out[idx]


def chunk_bytes(chunk: Chunk) -> int:
    return sum(t.numel() * t.element_size() for t in chunk)


def _tensors(obj: Any) -> list[Tensor]:
    """The tensors in a plain nested structure (tensors, lists, tuples, dicts, scalars)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _to(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it moved to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


class ChunkCache:
    """Chunks kept on ``device`` while they fit in ``max_bytes``, the rest in files under ``spill_dir``.

    Args:
        device: where in-memory chunks live (the model's device for QDrop's ``keep_gpu``, or cpu).
        max_bytes: memory budget for in-memory chunks; beyond it chunks go to disk.
        spill_dir: parent folder for the spill files (a temporary folder inside it is removed by
            :meth:`close`); the system temp folder if None.
    """

    def __init__(self, device: torch.device | str = "cpu", max_bytes: int = 4 << 30,
                 spill_dir: Path | None = None) -> None:
        self.device = torch.device(device)
        self.max_bytes = max_bytes
        self._spill_parent = spill_dir
        self._spill: Path | None = None
        self._memory: list[Chunk | None] = []
        self._contexts: list[Any] = []  # in-memory chunks' contexts (None for plain chunks)
        self._files: list[Path | None] = []
        self._rows: list[int] = []
        self._whole: list[bool] = []  # chunks drawn whole (added with a context)
        self._tags: list[Any] = []  # each chunk's tag (e.g. the pyramid levels of its call), in memory
        self.bytes_in_memory = 0
        self.bytes_on_disk = 0

    def add(self, quant_in: Tensor, fp_in: Tensor, fp_out: Tensor, context: Any = None, tag: Any = None) -> None:
        """Stores one chunk; with a ``context`` (a plain structure of tensors and values, see
        :class:`~rdoq_plugins.recon.unit_io.UnitIO`) the chunk is one sample, drawn whole. ``tag``
        is a small value returned with the chunk by :meth:`sample_tagged` (the pyramid levels its
        call ran at, for :class:`~rdoq_plugins.modules.LevelQuantizer`)."""
        if context is None and not len(quant_in) == len(fp_in) == len(fp_out):
            raise ValueError("a chunk's tensors disagree on the number of samples")
        if context is not None and quant_in.shape != fp_in.shape:
            raise ValueError(f"a chunk's inputs differ in shape: {tuple(quant_in.shape)} vs {tuple(fp_in.shape)}")
        chunk = (quant_in.detach(), fp_in.detach(), fp_out.detach())
        size = chunk_bytes(chunk) + sum(t.numel() * t.element_size() for t in _tensors(context))
        if self.bytes_in_memory + size <= self.max_bytes:
            self._memory.append(tuple(t.to(self.device) for t in chunk))  # type: ignore[arg-type]
            self._contexts.append(_to(context, self.device))
            self._files.append(None)
            self.bytes_in_memory += size
        else:
            if self._spill is None:
                if self._spill_parent is not None:
                    self._spill_parent.mkdir(parents=True, exist_ok=True)
                self._spill = Path(tempfile.mkdtemp(prefix="rdoq-cache-", dir=self._spill_parent))
            path = self._spill / f"{len(self._files):06d}.pt"
            torch.save((*(t.cpu() for t in chunk), _to(context, torch.device("cpu"))), path)
            self._memory.append(None)
            self._contexts.append(None)
            self._files.append(path)
            self.bytes_on_disk += size
        self._rows.append(1 if context is not None else len(quant_in))
        self._whole.append(context is not None)
        self._tags.append(tag)

    def __len__(self) -> int:
        return sum(self._rows)

    @property
    def num_chunks(self) -> int:
        return len(self._rows)

    def chunk(self, i: int) -> Chunk:
        """Chunk ``i`` on the cache's device."""
        q, f, o, _ = self.chunk_with_context(i)
        return q, f, o

    def chunk_with_context(self, i: int) -> tuple[Tensor, Tensor, Tensor, Any]:
        """Chunk ``i`` and its context (None for a plain chunk) on the cache's device."""
        held = self._memory[i]
        if held is not None:
            return (*held, self._contexts[i])
        path = self._files[i]
        assert path is not None
        loaded = torch.load(path, map_location=self.device, weights_only=True)
        return loaded[0], loaded[1], loaded[2], loaded[3] if len(loaded) > 3 else None

    def sample_chunk(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Any]:
        """One random chunk, whole, with its context (what a step on a sparse unit reads)."""
        if not self._rows:
            raise RuntimeError("sample_chunk() from an empty cache")
        return self.chunk_with_context(int(torch.randint(self.num_chunks, (1,), generator=generator)))

    def sample(self, batch_size: int, generator: torch.Generator) -> Chunk:
        """``batch_size`` random samples of one random chunk (fewer if the chunk is smaller; a
        chunk added with a context is returned whole)."""
        return self.sample_tagged(batch_size, generator)[0]

    def sample_tagged(self, batch_size: int, generator: torch.Generator) -> tuple[Chunk, Any]:
        """:meth:`sample` and the tag its chunk was added with."""
        if not self._rows:
            raise RuntimeError("sample() from an empty cache")
        i = int(torch.randint(self.num_chunks, (1,), generator=generator))
        q, f, o = self.chunk(i)
        if len(q) <= batch_size or self._whole[i]:
            return (q, f, o), self._tags[i]
        idx = torch.randperm(len(q), generator=generator)[:batch_size].to(q.device)
        return (q[idx], f[idx], o[idx]), self._tags[i]

    def close(self) -> None:
        """Frees memory and removes the spill files."""
        self._memory.clear()
        self._contexts.clear()
        self._files.clear()
        self._rows.clear()
        self._whole.clear()
        self._tags.clear()
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None

    def __enter__(self) -> ChunkCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
