"""A collated mmdet batch that keeps its images as uint8 and normalizes them when read.

mmdet's pipelines load uint8 pixels, resize and flip them (still uint8), then ``Normalize`` turns
them into float32 ``(x - mean) / std`` and ``Pad`` / ``collate`` pad with zeros. So a collated
image is fully described by its uint8 pixels, its ``img_norm_cfg`` and its ``img_shape``, at a
quarter of the bytes. :class:`CompactBatch` recovers the pixels from the normalized tensor
(``round(x * std + mean)``), checks that normalizing them again gives the very same tensor, bit
for bit, and keeps only the pixels. An image that does not pass the check (a pipeline with
photometric distortion after the resize, say) is kept as it came.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mmcv.parallel import DataContainer
from torch import Tensor


def _norm(meta: Mapping[str, Any]) -> tuple[Tensor, Tensor] | None:
    cfg = meta.get("img_norm_cfg")
    if cfg is None:
        return None
    mean = torch.as_tensor(cfg["mean"]).to(torch.float64).reshape(-1, 1, 1)
    std = torch.as_tensor(cfg["std"]).to(torch.float64).reshape(-1, 1, 1)
    return mean, 1.0 / std


def normalize(pixels: Tensor, mean: Tensor, stdinv: Tensor) -> Tensor:
    """``(pixels - mean) * (1 / std)`` as mmcv's ``imnormalize`` computes it: in float64 (OpenCV
    with float64 scalars), rounded once to float32."""
    return ((pixels.double() - mean) * stdinv).float()


class PackedImages:
    """A batch of normalized, zero-padded images ``[B, C, H, W]`` kept as uint8 pixels."""

    def __init__(self, pixels: Tensor, shapes: list[tuple[int, int]], norms: list[tuple[Tensor, Tensor]]) -> None:
        self.pixels, self.shapes, self.norms = pixels, shapes, norms

    @classmethod
    def pack(cls, images: Tensor, metas: list[Mapping[str, Any]]) -> PackedImages | None:
        """The packed form of ``images``, or None when it would not restore them exactly."""
        if images.dim() != 4 or images.dtype != torch.float32 or len(metas) != len(images):
            return None
        norms = [_norm(m) for m in metas]
        if any(n is None for n in norms):
            return None
        shapes = [tuple(int(v) for v in m["img_shape"][:2]) for m in metas]
        pixels = torch.zeros(images.shape, dtype=torch.uint8)
        for i, ((h, w), (mean, stdinv)) in enumerate(zip(shapes, norms)):  # type: ignore[misc]
            values = images[i, :, :h, :w].double() / stdinv + mean
            pixels[i, :, :h, :w] = values.round().clamp(0, 255).to(torch.uint8)
        packed = cls(pixels, shapes, norms)  # type: ignore[arg-type]
        return packed if torch.equal(packed.unpack(), images) else None

    def unpack(self) -> Tensor:
        """The normalized float32 images, zero outside each image's ``img_shape``."""
        out = torch.zeros(self.pixels.shape, dtype=torch.float32)
        for i, ((h, w), (mean, stdinv)) in enumerate(zip(self.shapes, self.norms)):
            out[i, :, :h, :w] = normalize(self.pixels[i, :, :h, :w], mean, stdinv)
        return out

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()


def _metas(batch: Mapping[str, Any], aug: int | None) -> list[Mapping[str, Any]] | None:
    metas = batch.get("img_metas")
    if aug is not None and isinstance(metas, list):
        metas = metas[aug]
    if isinstance(metas, DataContainer) and len(metas.data) == 1:
        return metas.data[0]  # type: ignore[no-any-return]
    return None


def _pack_container(dc: Any, metas: list[Mapping[str, Any]] | None) -> tuple[dict[str, Any], PackedImages] | None:
    """The container's settings (not its data) and its packed images, or None."""
    if not isinstance(dc, DataContainer) or not dc.stack or metas is None or len(dc.data) != 1:
        return None
    packed = PackedImages.pack(dc.data[0], metas)
    settings = {"stack": dc.stack, "padding_value": dc.padding_value, "cpu_only": dc.cpu_only, "pad_dims": dc.pad_dims}
    return None if packed is None else (settings, packed)


class CompactBatch(Mapping[str, Any]):
    """A collated batch (``mmcv.parallel.collate`` of a train or test pipeline's samples) whose
    ``img`` is held as uint8 pixels; reading ``img`` rebuilds the float32 tensor, identical to the
    one collated. Other keys are kept as they are."""

    def __init__(self, batch: Mapping[str, Any]) -> None:
        self._data = dict(batch)
        self._packed: dict[int | None, tuple[dict[str, Any], PackedImages]] = {}
        img = self._data.get("img")
        augs: list[int | None] = list(range(len(img))) if isinstance(img, list) else [None]
        for aug in augs:
            dc = img if aug is None else img[aug]  # type: ignore[index]
            found = _pack_container(dc, _metas(self._data, aug))
            if found is not None:
                self._packed[aug] = found
        if len(self._packed) == len(augs):
            self._data["img"] = None  # the float tensors go; the pixels stay

    @property
    def compact(self) -> bool:
        """Whether the images are held as pixels."""
        return self._data.get("img") is None and bool(self._packed)

    def _container(self, aug: int | None) -> DataContainer:
        settings, packed = self._packed[aug]
        return DataContainer([packed.unpack()], **settings)

    def __getitem__(self, key: str) -> Any:
        if key == "img" and self.compact:
            if None in self._packed:
                return self._container(None)
            return [self._container(aug) for aug in sorted(self._packed)]  # type: ignore[type-var]
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def image_bytes(self) -> int:
        """Bytes the images take as held."""
        if self.compact:
            return sum(p.nbytes for _, p in self._packed.values())
        img = self._data.get("img")
        dcs = img if isinstance(img, list) else [img]
        return sum(d.data[0].numel() * d.data[0].element_size() for d in dcs if isinstance(d, DataContainer))
