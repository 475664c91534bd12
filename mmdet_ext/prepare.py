"""A validated mmdet run (:func:`prepare`): config, quant section, checkpoint, data and model.

Everything that can be wrong with the input (config, quant section, work dir, checkpoint,
annotation files, calibration size) is checked here, before any long work and before anything is
written; the order is listed in docs/mmdet.md ("Input checks"). Behind every mmdet-side tool
(``tools/test.py``, ``recon.py``, ``gen_rd_curves.py``, ``dp_alloc.py``).
"""
from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmcv import Config
from mmdet.datasets import build_dataloader, build_dataset, replace_ImageToTensor
from mmdet.models import build_detector
from torch import nn

from mmdet_ext.calib_data import calib_dataset, calib_options, check_calib_size
from mmdet_ext.detector import check_heads, quantize_detector
from mmdet_ext.dist import rank_and_world
from mmdet_ext.quant_section import EXTRA_KEYS, merge_quant_section, parse_quant_section
from rdoq_plugins import QuantConfig, fuse_conv_bn
from rdoq_plugins.errors import InputError
from rdoq_plugins.files import load_strict
from rdoq_plugins.hashing import content_hash, run_hash
from rdoq_plugins.workflow.checkpoint import (
    FORMAT,
    check_finite,
    checkpoint_identity,
    load_quantized,
    quantized_format,
    read_checkpoint,
    state_dict_of,
)
from rdoq_plugins.workflow.work_dir import check_writable

logger = logging.getLogger("rdoq_plugins")


class AnnotationError(InputError):
    """An annotation file that is empty, not valid JSON or lists no images; the message names it."""


@dataclass
class Prepared:
    """A validated run: config, quant config, data and the loaded FP (or quantized) model."""

    cfg: Config
    qcfg: QuantConfig
    heads: dict[str, bool]
    calib: dict[str, Any]
    checkpoint: Path
    work_dir: Path
    test_dataset: Any
    test_loader: Any
    calib_dataset: Any | None
    model: nn.Module
    quantized_checkpoint: bool
    device: torch.device
    rank: int
    world: int
    run_hash: str
    classes: list[str] = field(default_factory=list)
    data_hash: str = ""


def load_config(path: Path, cfg_options: dict[str, Any] | None) -> Config:
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def annotation_files(ds_cfg: Mapping[str, Any]) -> list[Path]:
    """The local annotation files a dataset config reads (wrapped datasets and lists included),
    resolved against ``data_root`` as mmdet's ``CustomDataset`` does."""
    if ds_cfg.get("file_client_args", {}).get("backend", "disk") != "disk":
        return []
    out: list[Path] = []
    for inner in [ds_cfg.get("dataset"), *(ds_cfg.get("datasets") or [])]:
        if isinstance(inner, Mapping):
            out += annotation_files(inner)
    ann = ds_cfg.get("ann_file")
    root = ds_cfg.get("data_root")
    for name in ann if isinstance(ann, (list, tuple)) else [ann] if isinstance(ann, str) else []:
        out.append(Path(name if root is None or os.path.isabs(name) else os.path.join(root, name)))
    return out


def check_annotation_file(path: Path, split: str, parse: bool) -> None:
    """A missing or empty annotation file is an error naming it; with ``parse``, so is a JSON file
    that does not parse to an object (read only after the dataset failed to load it)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file of the {split} split not found: {path}")
    if path.stat().st_size == 0:
        raise AnnotationError(f"annotation file of the {split} split is empty (0 bytes): {path}")
    if not parse or path.suffix.lower() != ".json":
        return
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AnnotationError(f"annotation file of the {split} split is not valid JSON ({err}): {path}") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"annotation file of the {split} split holds a JSON {type(data).__name__}, not the "
                              f"object with 'images', 'annotations' and 'categories' it needs: {path}")


def build_checked_dataset(ds_cfg: Any, split: str, build: Any = None) -> Any:
    """``build_dataset(ds_cfg)`` (or ``build()``), its annotation files checked: missing, empty or
    not JSON (mmdet would fail with a TypeError), and a dataset without images (mmdet would fail
    after the FP evaluation) are one-line errors naming the file."""
    files = annotation_files(ds_cfg)
    for path in files:
        check_annotation_file(path, split, parse=False)
    try:
        dataset = build() if build is not None else build_dataset(ds_cfg)
    except Exception:
        for path in files:
            check_annotation_file(path, split, parse=True)
        raise
    if len(dataset) == 0:
        named = ", ".join(map(str, files)) if files else f"the config's data.{split}"
        raise AnnotationError(f"the {split} split has no images: {named} lists none")
    return dataset


def build_test_loader(cfg: Config, distributed: bool) -> tuple[Any, Any]:
    """The test dataset and loader, as mmdet's tools/test.py builds them."""
    test_cfg = copy.deepcopy(cfg.data.test)
    test_cfg.test_mode = True
    loader_cfg = {"samples_per_gpu": 1, "workers_per_gpu": cfg.data.get("workers_per_gpu", 2),
                  "dist": distributed, "shuffle": False, **cfg.data.get("test_dataloader", {})}
    if loader_cfg["samples_per_gpu"] > 1:
        test_cfg.pipeline = replace_ImageToTensor(test_cfg.pipeline)
    dataset = build_checked_dataset(test_cfg, "test")
    return dataset, build_dataloader(dataset, **loader_cfg)


def build_structure(cfg: Config) -> nn.Module:
    """The detector of ``cfg`` with no weights loaded (no pretrained download), in eval mode."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop("pretrained", None)
    model_cfg.train_cfg = None
    if "backbone" in model_cfg:
        model_cfg.backbone.init_cfg = None
    return build_detector(model_cfg, test_cfg=cfg.get("test_cfg")).eval()


def build_fp_model(cfg: Config, ckpt: dict[str, Any], checkpoint: Path) -> nn.Module:
    """The detector with the FP checkpoint loaded strictly, then BN folded."""
    model = build_structure(cfg)
    load_strict(model, state_dict_of(ckpt, checkpoint), f"checkpoint {checkpoint}")
    return fuse_conv_bn(model)


def build_quantized_model(cfg: Config, ckpt: dict[str, Any], checkpoint: Path) -> tuple[nn.Module, QuantConfig]:
    """The quantized detector of a quantized checkpoint, rebuilt from its stored quant config."""

    def build(quant: Mapping[str, Any]) -> nn.Module:
        stored = QuantConfig.from_dict(quant, extra_keys=EXTRA_KEYS)
        model = fuse_conv_bn(build_structure(cfg))
        quantize_detector(model, stored, check_heads(model, stored.extra.get("heads", {})), check=False)
        return model

    model = load_quantized(ckpt, checkpoint, build, FORMAT)
    return model, QuantConfig.from_dict(ckpt["meta"]["quant"], extra_keys=EXTRA_KEYS)


def prepare(config: Path, checkpoint: Path, work_dir: Path | None, quant_config: Path | None,
            cfg_options: dict[str, Any] | None = None, need_calib: bool = True) -> Prepared:
    """Validates every input and builds the data and the model; writes nothing. The checks run in
    the order docs/mmdet.md lists ("Input checks")."""
    cfg = load_config(config, cfg_options)
    qcfg = parse_quant_section(merge_quant_section(cfg.get("quant"), quant_config))
    calib = calib_options(qcfg.extra.get("calib"))
    work = work_dir if work_dir is not None else Path("work_dirs") / config.stem
    check_writable(work)
    ckpt = read_checkpoint(checkpoint)
    quantized = quantized_format(ckpt) is not None
    if not quantized:
        check_finite(state_dict_of(ckpt, checkpoint), checkpoint)
    rank, world = rank_and_world()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if quantized:
        if quant_config is not None or cfg.get("quant"):
            logger.warning("%s is a quantized checkpoint: its stored quant config is used, not the config's "
                           "quant section or --quant-config", checkpoint)
        model, qcfg = build_quantized_model(cfg, ckpt, checkpoint)
    else:
        model = build_fp_model(cfg, ckpt, checkpoint)
    test_dataset, test_loader = build_test_loader(cfg, world > 1)
    ds = None
    if need_calib and not quantized:
        split_cfg = cfg.data.train if calib["split"] == "train" else cfg.data.test
        ds = build_checked_dataset(split_cfg, calib["split"], lambda: calib_dataset(cfg, calib["split"]))
        check_calib_size(ds, qcfg.calibrate)
    heads = check_heads(model, qcfg.extra.get("heads", {}))
    classes = list(ckpt.get("meta", {}).get("CLASSES") or test_dataset.CLASSES)
    model.CLASSES = classes
    identity = checkpoint_identity(checkpoint)
    this_run = run_hash(qcfg.to_dict(), calib, heads, cfg.model, identity, world)
    # What RD curves depend on besides their own settings: the model, the layers and the data.
    data_hash = content_hash(qcfg.calibrate, calib, heads, cfg.model, identity, world, qcfg.to_dict()["overrides"],
                             qcfg.w_qconfig.ch_axis, qcfg.a_qconfig.ch_axis, algorithm="sha1", length=16)
    return Prepared(cfg, qcfg, heads, calib, checkpoint, work, test_dataset, test_loader, ds, model.to(device),
                    quantized, device, rank, world, this_run, classes, data_hash)
