"""What reconstruction reads: a unit's inputs and targets, bounded in memory and in disk traffic.

QDrop (Wei et al., ICLR 2022) caches, for every calibration batch, the unit's input in the quantized
model, its input in the FP model and its FP output. At 1333x800 that is ~0.2 GB per image at
ResNet's layer1 in float32 (49 GB for 256 images), which runs the official code out of memory.
:class:`ChunkCache` holds it in tiers:

1. on the compute device (the GPU) while it fits in that tier's budget,
2. in CPU memory (pinned when the compute device is a GPU) while it fits in the host budget,
3. in files on disk, read back in windows (:mod:`rdoq_plugins.recon.disk_windows`): over a run
   every spilled chunk is read ``disk_passes`` times, instead of once per step that draws it.

Floating-point tensors are stored in ``store_dtype`` (float16 halves the bytes; a chunk whose
values do not fit float16's range stays float32) and handed out in float32 on the compute device.

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

from rdoq_plugins.recon.disk_windows import DiskWindows

Chunk = tuple[Tensor, Tensor, Tensor]
SPILL_PREFIX = "rdoq-cache-"


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


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a plain nested structure."""
    return sum(t.numel() * t.element_size() for t in _tensors(obj))


def remove_stale_spills(parent: Path) -> int:
    """Removes spill folders a killed run left in ``parent``; returns how many."""
    if not parent.is_dir():
        return 0
    stale = [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(SPILL_PREFIX)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def _tensors(obj: Any) -> list[Tensor]:
    """The tensors in a plain nested structure (tensors, lists, tuples, dicts, scalars)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _to(obj: Any, device: torch.device, pin: bool = False) -> Any:
    """``obj`` with every tensor in it moved to ``device`` (pinned if asked and on the CPU)."""
    if isinstance(obj, Tensor):
        t = obj.to(device)
        return t.pin_memory() if pin and t.device.type == "cpu" else t
    if isinstance(obj, dict):
        return {k: _to(v, device, pin) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device, pin) for v in obj)
    return obj


def _fits(t: Tensor, dtype: torch.dtype) -> bool:
    """Whether every value of ``t`` is finite in ``dtype`` (no overflow to inf)."""
    return t.numel() == 0 or float(t.abs().amax()) <= torch.finfo(dtype).max


class ChunkCache:
    """Chunks on ``device`` within ``max_bytes``, then in CPU memory within ``host_bytes``, the rest
    in files under ``spill_dir``, read back in windows (see the module docstring).

    Args:
        device: the first tier's device (the GPU for QDrop's ``keep_gpu``, or cpu).
        max_bytes: budget of the first tier.
        spill_dir: parent folder of the spill folder (removed by :meth:`close`); system temp if None.
        host_bytes: budget of a CPU-memory tier after a GPU tier (ignored when ``device`` is cpu).
        store_dtype: dtype floating-point tensors are stored in (None keeps theirs).
        compute_device: where :meth:`sample` returns tensors (default: ``device``).
        disk_passes: how often each spilled chunk is read over the run that :meth:`plan` announces.
        window_bytes: memory for spilled chunks loaded at once (at least one chunk).
    """

    def __init__(self, device: torch.device | str = "cpu", max_bytes: int = 4 << 30,
                 spill_dir: Path | None = None, *, host_bytes: int = 0, store_dtype: torch.dtype | None = None,
                 compute_device: torch.device | str | None = None, disk_passes: int = 2,
                 window_bytes: int = 1 << 30) -> None:
        self.device = torch.device(device)
        self.compute_device = torch.device(compute_device) if compute_device is not None else self.device
        self.max_bytes = max_bytes
        self.host_bytes = host_bytes if self.device.type != "cpu" else 0
        self.store_dtype = store_dtype
        self._pin = self.compute_device.type == "cuda"
        self._spill_parent = spill_dir
        self._spill: Path | None = None
        self._memory: list[Chunk | None] = []
        self._contexts: list[Any] = []  # in-memory chunks' contexts (None for plain chunks)
        self._files: list[Path | None] = []
        self._sizes: list[int] = []
        self._rows: list[int] = []
        self._whole: list[bool] = []  # chunks drawn whole (added with a context)
        self._tags: list[Any] = []  # each chunk's tag (e.g. the pyramid levels of its call), in memory
        self.batch_chunks: list[int] = []  # chunks added per calibration batch (see end_batch)
        self._batch_start = 0
        self.bytes_in_memory = 0  # first tier
        self.bytes_on_host = 0  # CPU tier after a GPU tier
        self.bytes_on_disk = 0
        self.chunks_stored_fp32 = 0  # chunks kept in float32 because store_dtype would overflow
        self._disk = DiskWindows(self._load, disk_passes, window_bytes)
        self.bytes_read = 0
        self.chunk_loads = 0

    def _stored(self, t: Tensor, dtype: torch.dtype | None) -> Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    def add(self, quant_in: Tensor, fp_in: Tensor, fp_out: Tensor, context: Any = None, tag: Any = None) -> None:
        """Stores one chunk; with a ``context`` (a plain structure of tensors and values, see
        :class:`~rdoq_plugins.recon.unit_io.UnitIO`) the chunk is one sample, drawn whole. ``tag``
        is a small value returned with the chunk by :meth:`sample_tagged` (the pyramid levels its
        call ran at, for :class:`~rdoq_plugins.modules.LevelQuantizer`)."""
        if context is None and not len(quant_in) == len(fp_in) == len(fp_out):
            raise ValueError("a chunk's tensors disagree on the number of samples")
        if context is not None and quant_in.shape != fp_in.shape:
            raise ValueError(f"a chunk's inputs differ in shape: {tuple(quant_in.shape)} vs {tuple(fp_in.shape)}")
        dtype = self.store_dtype
        if dtype is not None and not all(_fits(t, dtype) for t in (quant_in, fp_in, fp_out) if t.is_floating_point()):
            dtype = None
            self.chunks_stored_fp32 += 1
        chunk: Chunk = (self._stored(quant_in, dtype), self._stored(fp_in, dtype), self._stored(fp_out, dtype))
        size = tensor_bytes(chunk) + tensor_bytes(context)
        if self.bytes_in_memory + size <= self.max_bytes:
            self._hold(chunk, context, self.device, pin=False)
            self.bytes_in_memory += size
        elif self.bytes_on_host + size <= self.host_bytes:
            self._hold(chunk, context, torch.device("cpu"), pin=self._pin)
            self.bytes_on_host += size
        else:
            path = self._spill_folder() / f"{len(self._files):06d}.pt"
            torch.save((*(t.cpu() for t in chunk), _to(context, torch.device("cpu"))), path)
            self._memory.append(None)
            self._contexts.append(None)
            self._files.append(path)
            self.bytes_on_disk += size
        self._sizes.append(size)
        self._rows.append(1 if context is not None else len(quant_in))
        self._whole.append(context is not None)
        self._tags.append(tag)

    def end_batch(self) -> None:
        """Marks the chunks added since the last mark as one calibration batch's."""
        self.batch_chunks.append(self.num_chunks - self._batch_start)
        self._batch_start = self.num_chunks

    def _hold(self, chunk: Chunk, context: Any, device: torch.device, pin: bool) -> None:
        self._memory.append(_to(chunk, device, pin))
        self._contexts.append(_to(context, device, pin))
        self._files.append(None)

    def _spill_folder(self) -> Path:
        if self._spill is None:
            if self._spill_parent is not None:
                self._spill_parent.mkdir(parents=True, exist_ok=True)
            self._spill = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=self._spill_parent))
        return self._spill

    def __len__(self) -> int:
        return sum(self._rows)

    @property
    def num_chunks(self) -> int:
        return len(self._rows)

    @property
    def spilled(self) -> list[int]:
        """Indices of the chunks on disk."""
        return [i for i, f in enumerate(self._files) if f is not None]

    def _out(self, t: Tensor) -> Tensor:
        t = t.to(self.compute_device, non_blocking=self._pin)
        return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t

    def _load(self, i: int) -> tuple[Tensor, Tensor, Tensor, Any]:
        path = self._files[i]
        assert path is not None
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        self.bytes_read += self._sizes[i]
        self.chunk_loads += 1
        return loaded[0], loaded[1], loaded[2], loaded[3] if len(loaded) > 3 else None

    def chunk(self, i: int) -> Chunk:
        """Chunk ``i`` on the compute device, in float32."""
        q, f, o, _ = self.chunk_with_context(i)
        return q, f, o

    def chunk_with_context(self, i: int) -> tuple[Tensor, Tensor, Tensor, Any]:
        """Chunk ``i`` and its context (None for a plain chunk) on the compute device."""
        held = self._memory[i]
        if held is not None:
            q, f, o, ctx = *held, self._contexts[i]
        elif i in self._disk.window:
            q, f, o, ctx = self._disk.window[i]
        else:
            q, f, o, ctx = self._load(i)
        return self._out(q), self._out(f), self._out(o), _to(ctx, self.compute_device)

    def plan(self, steps: int) -> None:
        """Announces a run of ``steps`` draws, so the disk windows rotate ``disk_passes`` times
        through the spilled chunks over it."""
        self._disk.plan(steps)

    def _draw(self, generator: torch.Generator) -> int:
        """A chunk index, uniform over the run (see :mod:`rdoq_plugins.recon.disk_windows`)."""
        return self.redirect(int(torch.randint(self.num_chunks, (1,), generator=generator)), generator)

    def redirect(self, i: int, generator: torch.Generator) -> int:
        """The chunk a draw of chunk ``i`` reads: ``i`` itself unless it is on disk outside the
        current window (see :mod:`rdoq_plugins.recon.disk_windows`)."""
        if self._files[i] is None:
            return i
        return self._disk.draw(i, self.spilled, self._sizes, self.num_chunks, generator)

    def sample_chunk(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Any]:
        """One random chunk, whole, with its context (what a step on a sparse unit reads)."""
        if not self._rows:
            raise RuntimeError("sample_chunk() from an empty cache")
        return self.chunk_with_context(self._draw(generator))

    def sample(self, batch_size: int, generator: torch.Generator) -> Chunk:
        """``batch_size`` random samples of one random chunk (fewer if the chunk is smaller; a
        chunk added with a context is returned whole)."""
        return self.sample_tagged(batch_size, generator)[0]

    def sample_tagged(self, batch_size: int, generator: torch.Generator) -> tuple[Chunk, Any]:
        """:meth:`sample` and the tag its chunk was added with."""
        if not self._rows:
            raise RuntimeError("sample() from an empty cache")
        return self.pick(self._draw(generator), batch_size, generator)

    def pick(self, i: int, batch_size: int, generator: torch.Generator) -> tuple[Chunk, Any]:
        """``batch_size`` random samples of chunk ``i`` (all of it when smaller or drawn whole) and
        its tag."""
        q, f, o = self.chunk(i)
        if len(q) <= batch_size or self._whole[i]:
            return (q, f, o), self._tags[i]
        idx = torch.randperm(len(q), generator=generator)[:batch_size].to(q.device)
        return (q[idx], f[idx], o[idx]), self._tags[i]

    def stats(self) -> dict[str, float]:
        """Bytes per tier and what reading the disk tier cost so far."""
        return {"bytes_device": self.bytes_in_memory, "bytes_host": self.bytes_on_host,
                "bytes_disk": self.bytes_on_disk, "bytes_read": self.bytes_read, "chunk_loads": self.chunk_loads,
                "load_wait_s": round(self._disk.wait_s, 3), "chunks_fp32": self.chunks_stored_fp32}

    def close(self) -> None:
        """Frees memory and removes the spill files."""
        self._disk.close()
        self._memory.clear()
        self._contexts.clear()
        self._files.clear()
        self._sizes.clear()
        self._rows.clear()
        self._whole.clear()
        self._tags.clear()
        self.batch_chunks.clear()
        self._batch_start = 0
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None

    def __enter__(self) -> ChunkCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
