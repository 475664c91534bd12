"""A validated OpenPCDet run (:func:`prepare`), as OpenPCDet's ``tools/test.py`` builds it.

``cfg_from_yaml_file`` + ``cfg_from_list`` (``--set``), the quant section (the config's top-level
``QUANT:`` key, with ``--quant_cfg FILE`` and then ``--set QUANT.*`` merged into it; the core
schema plus ``calib``), the
checkpoint (read with ``torch.load(weights_only=True)``), ``build_dataloader(training=False)``,
``build_network``, the FP weights loaded **strictly** (OpenPCDet's ``load_params_from_file`` only
logs the keys it cannot load; here a missing, unexpected or reshaped key is an error; NaN or
infinite weights are one too), BN folded,
every override checked against the model's layers, and the size of the calibration split. Nothing
long runs and nothing is written.

``pcdet`` is imported inside functions only (:func:`pcdet_ext.openpcdet_import.import_pcdet`), so
importing this module needs torch and spconv, never OpenPCDet. Without CUDA,
:func:`pcdet_ext.apply_cpu_patches` is applied.
"""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from pcdet_ext.calib_data import calib_dataset_cfg, check_calib_size
from pcdet_ext.config import (
    EXTRA_KEYS,
    QUANT_KEY,
    calib_options,
    load_pcdet_config,
    parse_quant,
    quant_section,
    quant_sets,
)
from pcdet_ext.cpu_patches import apply_cpu_patches
from pcdet_ext.detector import check_supported, remaining_batchnorms
from pcdet_ext.openpcdet_import import import_pcdet
from pcdet_ext.sparse_detector import load_quantized
from pcdet_ext.weights import load_fp_weights
from rdoq_plugins import QuantConfig, fuse_conv_bn
from rdoq_plugins.cli_flags import rdoq_overrides
from rdoq_plugins.config.load import plain
from rdoq_plugins.hashing import content_hash
from rdoq_plugins.modules import check_overrides, quantizable_layers
from rdoq_plugins.workflow.checkpoint import (
    check_finite,
    checkpoint_identity,
    quantized_format,
    read_checkpoint,
    state_dict_of,
)
from rdoq_plugins.workflow.launch import init_distributed
from rdoq_plugins.workflow.tool_settings import ToolRole, tool_rdoq
from rdoq_plugins.workflow.work_dir import check_writable

logger = logging.getLogger("pcdet_ext")
# Rank 0 calibrates and reconstructs while the other ranks wait in a barrier: hours, not minutes.
DIST_TIMEOUT = datetime.timedelta(hours=48)
TRUST_HINT = "if you trust the file, pass --trust_ckpt to unpickle it fully"


@dataclass
class Prepared:
    """A validated run: OpenPCDet config, quant config, data and the loaded model."""

    pcdet: SimpleNamespace
    cfg: Any
    cfg_file: Path
    qcfg: QuantConfig
    calib: dict[str, Any]
    checkpoint: Path
    work_dir: Path
    model: nn.Module  # FP with BN folded, or the quantized model of a quantized checkpoint
    quantized_checkpoint: bool
    test_set: Any
    test_loader: Any
    calib_set: Any | None
    device: torch.device
    rank: int
    world: int
    pcdet_logger: Any
    data_hash: str  # what RD curves depend on besides their own settings
    batch_size: int
    workers: int
    save_to_file: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def default_work_dir(cfg: Any, extra_tag: str) -> Path:
    """OpenPCDet's checkpoint folder of this experiment: ``output/<group>/<tag>/<extra_tag>/ckpt``."""
    return Path(cfg.ROOT_DIR) / "output" / cfg.EXP_GROUP_PATH / cfg.TAG / extra_tag / "ckpt"


def prepare(args: Any, need_test: bool = True, need_calib: bool = True, need_eval: bool = True,
            rdoq_tool: ToolRole | None = None) -> Prepared:
    """Validates every input and builds data and model; writes nothing.

    ``args``: the parsed flags of :mod:`pcdet_ext.cli` (``cfg_file``, ``ckpt``, ``set_cfgs``,
    ``quant_cfg``, ``work_dir``, ``batch_size``, ``workers``, ``extra_tag``, ``launcher``,
    ``local_rank``, ``trust_ckpt``, ``save_to_file``; with ``rdoq_tool`` the RDOQ flags, laid over
    the ``rdoq`` section and the flags the earlier RDOQ tools stored in the work dir, as
    :func:`~rdoq_plugins.workflow.tool_settings.tool_rdoq` does for that tool)."""
    start = time.time()
    pcdet = import_pcdet(need_eval)
    if not torch.cuda.is_available():
        apply_cpu_patches()
    cfg = load_pcdet_config(pcdet, args.cfg_file, args.set_cfgs)
    qcfg, calib = parse_quant(quant_section(cfg, args.quant_cfg, args.set_cfgs))
    work_dir = Path(args.work_dir) if args.work_dir is not None else default_work_dir(cfg, args.extra_tag)
    check_writable(work_dir)
    checkpoint = Path(args.ckpt)
    ckpt = read_checkpoint(checkpoint, getattr(args, "trust_ckpt", False), TRUST_HINT)
    quantized = quantized_format(ckpt) is not None
    if rdoq_tool is not None and not quantized:  # a quantized checkpoint brings its own section
        qcfg = replace(qcfg, rdoq=tool_rdoq(qcfg.rdoq, rdoq_overrides(args), work_dir, rdoq_tool))
    state = None if quantized else state_dict_of(ckpt, checkpoint)
    if state is not None:
        check_finite(state, checkpoint)
    del ckpt
    rank, world = init_distributed(args.launcher, args.local_rank, DIST_TIMEOUT)
    cfg.LOCAL_RANK = rank
    if args.batch_size is None:
        batch_size = int(cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU)
    else:
        if args.batch_size % world:
            raise ValueError(f"--batch_size {args.batch_size} is not a multiple of the {world} processes")
        batch_size = args.batch_size // world
    pcdet_logger = pcdet.common_utils.create_logger(None, rank=rank)
    test_set, test_loader, _ = pcdet.build_dataloader(
        dataset_cfg=cfg.DATA_CONFIG, class_names=cfg.CLASS_NAMES, batch_size=batch_size, dist=world > 1,
        workers=args.workers, logger=pcdet_logger, training=False)
    model = pcdet.build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=test_set)
    check_supported(model)
    if quantized:
        if args.quant_cfg is not None or cfg.get(QUANT_KEY) or quant_sets(args.set_cfgs):
            logger.warning("%s is a quantized checkpoint: its stored quant config is used, not the config's %s "
                           "section or --quant_cfg", checkpoint, QUANT_KEY)
        model, qcfg = load_quantized(fuse_conv_bn(model), checkpoint, extra_keys=EXTRA_KEYS)
        calib = calib_options(qcfg.extra.get("calib"))
    else:
        assert state is not None
        load_fp_weights(model, state, f"checkpoint {checkpoint}")
        fuse_conv_bn(model)
        check_overrides(qcfg, quantizable_layers(model))  # overrides name real layers, before any evaluation
    left = remaining_batchnorms(model)
    if left:
        logger.warning("%d BatchNorm layers could not be folded (e.g. %s); they run in FP after quantizers",
                       len(left), left[0])
    calib_set = None
    if need_calib and not quantized:
        data_cfg, training = calib_dataset_cfg(cfg.DATA_CONFIG, calib["split"], calib["augment"])
        calib_set, _, _ = pcdet.build_dataloader(dataset_cfg=data_cfg, class_names=cfg.CLASS_NAMES,
                                                 batch_size=calib["batch_size"], dist=False, workers=0,
                                                 logger=pcdet_logger, training=training)
        check_calib_size(qcfg.calibrate, len(calib_set))
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    # What RD curves depend on besides their own settings: model, weights, layers and calibration data.
    qdict = qcfg.to_dict()
    data_hash = content_hash(plain(cfg.MODEL), plain(cfg.DATA_CONFIG), list(cfg.CLASS_NAMES),
                         checkpoint_identity(checkpoint), qcfg.calibrate, calib, qdict["overrides"],
                         qcfg.w_qconfig.ch_axis, qcfg.a_qconfig.ch_axis)
    prep = Prepared(pcdet, cfg, Path(args.cfg_file), qcfg, calib, checkpoint, work_dir, model.to(device).eval(),
                    quantized, test_set if need_test else None, test_loader if need_test else None, calib_set,
                    device, rank, world, pcdet_logger, data_hash, batch_size, args.workers,
                    bool(getattr(args, "save_to_file", False)))
    prep.timings["prepare"] = time.time() - start
    return prep
