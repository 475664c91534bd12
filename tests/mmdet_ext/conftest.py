"""Fixtures for the mmdet adapter: a small generated digits set, configs on it, a checkpoint; and
helpers: a bench detector built from its config, the image tensor of a collated batch, a tool run
that must stop on an input error."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rdoq_bench.digits_coco import DigitsCocoSpec, generate_digits_coco
from rdoq_plugins import fuse_conv_bn
from tests.conftest import stops_on_input_error

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "configs" / "bench"
CHECKPOINTS = REPO / "checkpoints"


@pytest.fixture(scope="session")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train and 8 val images of the benchmark's kind, at 160 px to keep the tests fast."""
    spec = DigitsCocoSpec(image_size=160, num_train=16, num_val=8, min_digit_px=16, max_digit_px=64)
    return generate_digits_coco(tmp_path_factory.mktemp("digits") / "coco", spec)


@pytest.fixture(scope="session")
def make_config(small_digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Writes a config that inherits a bench config, reads the small set and has ``quant``."""
    folder = tmp_path_factory.mktemp("configs")

    def make(base: str = "faster_rcnn_r50_narrow_digits.py", quant: str = "", name: str = "cfg") -> Path:
        root = f"{small_digits}/"
        text = (
            f"_base_ = ['{BENCH / base}']\n"
            f"data_root = '{root}'\n"
            "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),\n"
            "    dict(type='Resize', img_scale=(160, 160), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.0),\n"
            "    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True), dict(type='Pad', size_divisor=32),\n"
            "    dict(type='DefaultFormatBundle'), dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])]\n"
            "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', img_scale=(160, 160),\n"
            "    flip=False, transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),\n"
            "    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True), dict(type='Pad', size_divisor=32),\n"
            "    dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])]\n"
            "data = dict(workers_per_gpu=0,\n"
            f"    train=dict(ann_file='{root}annotations/instances_train.json', img_prefix='{root}train/',\n"
            "               pipeline=train_pipeline),\n"
            f"    val=dict(ann_file='{root}annotations/instances_val.json', img_prefix='{root}val/',\n"
            "             pipeline=test_pipeline),\n"
            f"    test=dict(ann_file='{root}annotations/instances_val.json', img_prefix='{root}val/',\n"
            "              pipeline=test_pipeline))\n"
            f"{quant}\n"
        )
        path = folder / f"{name}.py"
        path.write_text(text)
        return path

    return make


@pytest.fixture(scope="session")
def random_checkpoint(make_config: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """An initialised, untrained checkpoint of a bench model (for flows, not accuracy)."""
    from mmcv import Config
    from mmdet.models import build_detector

    made: dict[str, Path] = {}

    def make(base: str = "faster_rcnn_r50_narrow_digits.py") -> Path:
        if base not in made:
            torch.manual_seed(0)
            model = build_detector(Config.fromfile(str(make_config(base, name="plain"))).model)
            model.init_weights()
            path = tmp_path_factory.mktemp("ckpt") / f"{Path(base).stem}.pth"
            torch.save({"state_dict": model.state_dict(), "meta": {"CLASSES": [str(i) for i in range(10)]}}, path)
            made[base] = path
        return made[base]

    return make


def fused_detector(make_config: Callable[..., Path], base: str) -> Any:
    """A bench detector built from its config (initial weights), BN folded, in eval mode."""
    from mmcv import Config
    from mmdet.models import build_detector

    return fuse_conv_bn(build_detector(Config.fromfile(str(make_config(base, name="plain"))).model).eval())


def batch_images(batch: object) -> torch.Tensor:
    """The image tensor of a collated (or compact) batch: its ``img`` DataContainer's data."""
    from mmcv.parallel import DataContainer

    img = batch["img"]  # type: ignore[index]
    dc = img[0] if isinstance(img, list) else img
    assert isinstance(dc, DataContainer)
    return dc.data[0]


def tool_fails(tool: Callable[[list[str]], Any], argv: list[str], err: type[BaseException], match: str,
               work: Path | None = None) -> str:
    """:func:`tests.conftest.stops_on_input_error` with this framework's evaluation never called."""
    import tools.test

    return stops_on_input_error(tool, argv, err, match, (tools.test, "evaluate"), work)
