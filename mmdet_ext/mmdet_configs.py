"""Paths of the configs that ship inside the installed mmdet package (``mmdet/.mim/configs``).

mmcv 1.x configs only inherit files by path, so our configs compute the path of mmdet's own file::

    from mmdet_ext.mmdet_configs import mmdet_config
    _base_ = [mmdet_config('faster_rcnn/faster_rcnn_r50_fpn_2x_coco.py')]

This module does not import mmdet at import time.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def mmdet_config_root() -> Path:
    """The folder of mmdet's bundled configs."""
    spec = importlib.util.find_spec("mmdet")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("mmdet is not installed; run 'make install'")
    return Path(spec.origin).parent / ".mim" / "configs"


def mmdet_config(relative: str) -> str:
    """Absolute path of ``relative`` (e.g. ``'_base_/models/retinanet_r50_fpn.py'``) in mmdet's configs."""
    path = mmdet_config_root() / relative
    if not path.is_file():
        raise FileNotFoundError(f"mmdet ships no config {relative!r} (looked in {mmdet_config_root()})")
    return str(path)
