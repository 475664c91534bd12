"""One implementation behind ``tools/test.py`` and ``tools/recon.py``: mmdet 2.28's test flow with the
quantization hooks between checkpoint loading and the test loop.

Everything that can be wrong with the input (config, quant section, checkpoint, calibration size)
is checked in :func:`prepare`, before any long work and before anything is written.
"""
from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmcv import Config
from mmcv.parallel import scatter
from mmcv.runner import HOOKS, get_priority
from mmcv.utils import build_from_cfg
from mmdet.datasets import build_dataloader, build_dataset, replace_ImageToTensor
from mmdet.models import build_detector
from torch import nn
from tqdm import tqdm

from mmdet_ext.calib_data import calib_batches, calib_dataset, calib_options, check_calib_size
from mmdet_ext.detector import DetectorRun, check_heads, detector_units, quantize_detector
from mmdet_ext.dist import gather_results, rank_and_world
from mmdet_ext.hooks import QuantContext
from mmdet_ext.quant_section import EXTRA_KEYS, hook_configs, merge_quant_section, parse_quant_section
from mmdet_ext.rd_target import rd_scores
from mmdet_ext.state import checkpoint_identity, config_hash, is_quantized, load_strict, read_checkpoint
from rdoq_plugins import QuantConfig, fuse_conv_bn
from rdoq_plugins.memory import map_large_allocations
from rdoq_plugins.recon.select import select_units

logger = logging.getLogger("rdoq_plugins")


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


def build_test_loader(cfg: Config, distributed: bool) -> tuple[Any, Any]:
    """The test dataset and loader, as mmdet's tools/test.py builds them."""
    test_cfg = copy.deepcopy(cfg.data.test)
    test_cfg.test_mode = True
    loader_cfg = {"samples_per_gpu": 1, "workers_per_gpu": cfg.data.get("workers_per_gpu", 2),
                  "dist": distributed, "shuffle": False, **cfg.data.get("test_dataloader", {})}
    if loader_cfg["samples_per_gpu"] > 1:
        test_cfg.pipeline = replace_ImageToTensor(test_cfg.pipeline)
    dataset = build_dataset(test_cfg)
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
    load_strict(model, ckpt["state_dict"], f"checkpoint {checkpoint}")
    return fuse_conv_bn(model)


def build_quantized_model(cfg: Config, ckpt: dict[str, Any], checkpoint: Path) -> tuple[nn.Module, QuantConfig]:
    """The quantized detector of a quantized checkpoint, rebuilt from its stored quant config."""
    stored = QuantConfig.from_dict(ckpt["meta"]["quant"], extra_keys=EXTRA_KEYS)
    model = fuse_conv_bn(build_structure(cfg))
    quantize_detector(model, stored, check_heads(model, stored.extra.get("heads", {})))
    load_strict(model, ckpt["state_dict"], f"quantized checkpoint {checkpoint}")
    return model, stored


def prepare(config: Path, checkpoint: Path, work_dir: Path | None, quant_config: Path | None,
            cfg_options: dict[str, Any] | None = None, need_calib: bool = True) -> Prepared:
    """Validates every input and builds the data and the model; writes nothing."""
    cfg = load_config(config, cfg_options)
    qcfg = parse_quant_section(merge_quant_section(cfg.get("quant"), quant_config))
    calib = calib_options(qcfg.extra.get("calib"))
    ckpt = read_checkpoint(checkpoint)
    rank, world = rank_and_world()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    test_dataset, test_loader = build_test_loader(cfg, world > 1)
    quantized = is_quantized(ckpt)
    ds = None
    if quantized:
        if quant_config is not None or cfg.get("quant"):
            logger.warning("%s is a quantized checkpoint: its stored quant config is used, not the config's "
                           "quant section or --quant-config", checkpoint)
        model, qcfg = build_quantized_model(cfg, ckpt, checkpoint)
    else:
        model = build_fp_model(cfg, ckpt, checkpoint)
        if need_calib:
            ds = calib_dataset(cfg, calib["split"])
            check_calib_size(ds, qcfg.calibrate)
    heads = check_heads(model, qcfg.extra.get("heads", {}))
    classes = list(ckpt.get("meta", {}).get("CLASSES") or test_dataset.CLASSES)
    model.CLASSES = classes
    work = work_dir if work_dir is not None else Path("work_dirs") / config.stem
    run_hash = config_hash(qcfg.to_dict(), calib, heads, cfg.model, checkpoint_identity(checkpoint), world)
    # What RD curves depend on besides their own settings: the model, the layers and the data.
    data_hash = config_hash(qcfg.calibrate, calib, heads, cfg.model, checkpoint_identity(checkpoint), world,
                            qcfg.to_dict()["overrides"], qcfg.w_qconfig.ch_axis, qcfg.a_qconfig.ch_axis)
    return Prepared(cfg, qcfg, heads, calib, checkpoint, work, test_dataset, test_loader, ds, model.to(device),
                    quantized, device, rank, world, run_hash, classes, data_hash)


@dataclass
class Planned:
    """Quantization set up and checked, ready to run: the context and its hooks in run order."""

    ctx: QuantContext
    hooks: list[Any]


def plan_quantization(prep: Prepared, hooks: list[dict[str, Any]] | None = None) -> Planned:
    """Quantizes a copy of the FP model, reads the calibration batches and runs every hook's
    ``check`` (cheap checks, cost projections): the config's hooks, resuming from the work dir's
    state, or ``hooks`` (the single-step RDOQ tools, which work on the FP model and never resume a
    model state). Nothing long runs here, so tools call it before the FP evaluation."""
    if prep.quantized_checkpoint:
        raise ValueError(f"{prep.checkpoint} is already quantized; evaluate it without hooks")
    fp_model = prep.model
    for p in fp_model.parameters():
        p.requires_grad_(False)
    model = copy.deepcopy(fp_model)
    quantize_detector(model, prep.qcfg, prep.heads)
    if prep.qcfg.recon is not None:  # recon.exclude names real units: checked before calibration
        select_units(detector_units(model), prep.qcfg.recon.exclude)
    map_large_allocations()  # feature maps of tens of MB: their pages go back to the OS when freed
    random.seed(prep.calib["seed"])
    np.random.seed(prep.calib["seed"])
    batches = calib_batches(prep.calib_dataset, prep.qcfg.calibrate, prep.calib["samples_per_gpu"],
                            prep.calib["seed"], prep.rank, prep.world, images_needed(prep.qcfg, hooks))
    run = DetectorRun(fp_model, prep.device, batches, rd_scores(prep.qcfg))
    ctx = QuantContext(model=model, fp_model=fp_model, qcfg=prep.qcfg, work_dir=prep.work_dir, batches=batches,
                       run=run, device=prep.device, run_hash=prep.run_hash,
                       rank=prep.rank, world=prep.world, logger=logger, data_hash=prep.data_hash)
    if hooks is None:
        resume(ctx)
    built = [build_from_cfg(h, HOOKS) for h in (hooks if hooks is not None else hook_configs(prep.qcfg))]
    built.sort(key=lambda h: get_priority(h.priority))  # mmcv: lower value runs first
    for hook in built:
        hook.check(ctx)
    return Planned(ctx, built)


def run_quantization(planned: Planned) -> QuantContext:
    """Runs the hooks' ``before_test`` stages in order (calibration, RD curves, bit allocation,
    reconstruction), gradients enabled."""
    with torch.enable_grad():
        for hook in planned.hooks:
            hook.before_test(planned.ctx)
    return planned.ctx


def quantize(prep: Prepared, hooks: list[dict[str, Any]] | None = None) -> QuantContext:
    """:func:`plan_quantization`, then :func:`run_quantization`."""
    return run_quantization(plan_quantization(prep, hooks))


def images_needed(qcfg: QuantConfig, hooks: list[dict[str, Any]] | None) -> int | None:
    """How many calibration images a hook list reads: the RDOQ-only steps (curves, allocation)
    read ``rdoq.calib_images``; None means all of ``calibrate``."""
    if hooks is None or qcfg.rdoq is None or qcfg.rdoq.calib_images is None:
        return None
    if any(h["type"] not in ("RDCurvesHook", "BitAllocHook") for h in hooks):
        return None
    return min(qcfg.calibrate, qcfg.rdoq.calib_images)


def resume(ctx: QuantContext) -> None:
    """Loads the work dir's state if it belongs to the same run (same config, checkpoint, data)."""
    path = ctx.state_path
    if not path.is_file():
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("run_hash") != ctx.run_hash:
        logger.warning("%s belongs to another run (config or checkpoint changed); starting afresh", path)
        return
    load_strict(ctx.model, state["state_dict"], f"resume state {path}")
    ctx.model.to(ctx.device)
    ctx.resumed = {"stage": state["stage"], "done_units": state["done_units"]}
    ctx.recon_stats.update(state.get("recon_stats", {}))


@torch.no_grad()
def inference(model: nn.Module, loader: Any, device: torch.device, desc: str) -> list[Any]:
    """Runs the detector over the test loader; all ranks' results in dataset order."""
    model.eval()
    rank, _ = rank_and_world()
    target = [-1] if device.type == "cpu" else [device.index or 0]
    results: list[Any] = []
    for data in tqdm(loader, desc=desc, disable=rank != 0, mininterval=2.0):
        data = scatter(data, target)[0]
        results.extend(model(return_loss=False, rescale=True, **data))
    return gather_results(results, len(loader.dataset))


def evaluate(prep: Prepared, model: nn.Module, desc: str, metrics: list[str]) -> tuple[dict[str, float], float]:
    """``dataset.evaluate`` on rank 0 (other ranks get an empty dict), and the time it took."""
    start = time.time()
    outputs = inference(model, prep.test_loader, prep.device, desc)
    result: dict[str, float] = {}
    if prep.rank == 0:
        kwargs = {k: v for k, v in prep.cfg.get("evaluation", {}).items()
                  if k not in ("interval", "tmpdir", "start", "gpu_collect", "save_best", "rule", "dynamic_intervals")}
        kwargs["metric"] = metrics
        result = {k: float(v) for k, v in prep.test_dataset.evaluate(outputs, **kwargs).items()
                  if isinstance(v, (int, float))}
    return result, time.time() - start
