"""The OpenPCDet adapter: OpenPCDet's ``tools/test.py`` flow with post-training quantization.

Flow (one implementation behind ``tools/pcdet/test.py``, ``recon.py``, ``gen_rd_curves.py`` and
``dp_alloc.py``):

1. :func:`prepare` validates everything before any long work and writes nothing:
   ``cfg_from_yaml_file`` + ``cfg_from_list`` (``--set``), the quant section (the config's
   top-level ``QUANT:`` key, with ``--quant_cfg FILE`` laid over it; the core schema
   :class:`~rdoq_plugins.QuantConfig` plus ``calib``), the checkpoint (read with
   ``torch.load(weights_only=True)``), ``build_dataloader(training=False)``, ``build_network``,
   the FP weights loaded **strictly** (OpenPCDet's ``load_params_from_file`` only logs the keys it
   cannot load; here a missing, unexpected or reshaped key is an error), BN folded, and the size of
   the calibration split.
2. :func:`quantize`: ``N`` calibration frames (``quant.calibrate``) from the train or test split,
   then :func:`pcdet_ext.runner.quantize_sparse_detector` with gradients enabled (OpenPCDet
   evaluates under ``torch.no_grad()``). Its ``run(model, batch)`` is the forward pass of the VFE,
   the backbones and every head branch *without* post-processing (VoxelNeXt's NMS is a CUDA op), on
   a shallow copy of the batch dict (OpenPCDet's modules write into it); ``outputs(model, batch)``
   are all head branches' features of all heads, so RD distortion is measured at the head outputs.
3. :func:`evaluate`: OpenPCDet's ``eval_utils.eval_one_epoch`` (from OpenPCDet's ``tools/``).
4. :func:`finish`: ``quantized.pth`` (evaluated later by ``test.py`` without re-calibration) and
   ``report.json`` in the work dir, written atomically.

``pcdet`` is imported inside functions only (:func:`import_pcdet`), so importing this module needs
torch and spconv, never OpenPCDet. Without CUDA, :func:`pcdet_ext.apply_cpu_patches` is applied and
OpenPCDet's ``load_data_to_gpu`` is replaced by a device-agnostic twin in ``eval_utils``.

Distributed runs (``--launcher pytorch``): every rank evaluates its share; rank 0 alone calibrates
and reconstructs, writes ``quantized.pth``, and the other ranks load it (the work dir must be
shared between nodes).
"""
from __future__ import annotations

import copy
import datetime
import functools
import importlib.util
import json
import logging
import numbers
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from spconv.pytorch.conv import SparseConvolution
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from pcdet_ext.cpu_patches import apply_cpu_patches
from pcdet_ext.runner import (
    FORMAT,
    curve_batches,
    curve_store,
    load_quantized,
    quantize_sparse_detector,
    quantize_sparse_model,
    save_quantized,
)
from rdoq_plugins import QuantConfig, fuse_conv_bn
from rdoq_plugins.cli_flags import OPENPCDET_INSTALL, rdoq_from_flags
from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.config.errors import check_keys, get_bool, get_choice, get_int
from rdoq_plugins.config.load import merge_quant_section, plain
from rdoq_plugins.files import atomic_write_text, load_strict
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.rd import apply_choice, curve_table
from rdoq_plugins.rd.alloc_output import alloc_summary, write_allocations
from rdoq_plugins.rd.run import (
    allocate_rates,
    compute_curves,
    curve_keys,
    measure_allocations,
    rd_layers,
)
from rdoq_plugins.rd.store import spec_hash
from rdoq_plugins.report import bit_stats, peak_rss_mb, size_bytes

logger = logging.getLogger("pcdet_ext")

QUANT_KEY = "QUANT"  # the quant section's key in an OpenPCDet YAML config
EXTRA_KEYS = ("calib",)
CALIB_DEFAULTS: dict[str, Any] = {"split": "train", "batch_size": 2, "seed": 1005, "augment": False}
ALLOC_DIR = "rd_alloc"
CURVE_DIR = "rd_curves"
# Rank 0 calibrates and reconstructs while the other ranks wait in a barrier: hours, not minutes.
DIST_TIMEOUT = datetime.timedelta(hours=48)
HEAD_METRICS = ("mAP", "NDS")  # printed first when present (nuScenes)
EVAL_SEED = 1024  # OpenPCDet's test.py seeds numpy with it


class PcdetMissing(RuntimeError):
    """OpenPCDet (``pcdet``) or its ``tools/eval_utils`` cannot be imported."""


# ---------------------------------------------------------------------------------------------
# OpenPCDet, imported lazily
# ---------------------------------------------------------------------------------------------
def import_pcdet(need_eval: bool = True) -> SimpleNamespace:
    """OpenPCDet's modules the adapter uses: ``config``, ``build_dataloader``, ``build_network``,
    ``common_utils`` and (``need_eval``) ``eval_utils``; :class:`PcdetMissing` with install
    instructions when they cannot be imported."""
    try:
        import pcdet
        from pcdet import config
        from pcdet.datasets import build_dataloader
        from pcdet.models import build_network
        from pcdet.utils import common_utils
    except (ImportError, OSError) as err:
        raise PcdetMissing(f"OpenPCDet (pcdet) is not importable ({type(err).__name__}: {err}).\n"
                           f"{OPENPCDET_INSTALL}") from err
    ns = SimpleNamespace(pcdet=pcdet, config=config, build_dataloader=build_dataloader,
                         build_network=build_network, common_utils=common_utils, eval_utils=None)
    if need_eval:
        ns.eval_utils = import_eval_utils(pcdet)
    return ns


def eval_utils_candidates(pcdet: ModuleType) -> list[Path]:
    """Where OpenPCDet's ``tools/eval_utils/eval_utils.py`` may be: ``$OPENPCDET_ROOT/tools``, the
    checkout ``pcdet`` was installed from (``python setup.py develop``), the working directory."""
    roots = []
    if os.environ.get("OPENPCDET_ROOT"):
        roots.append(Path(os.environ["OPENPCDET_ROOT"]) / "tools")
    if getattr(pcdet, "__file__", None):
        roots.append(Path(pcdet.__file__).resolve().parents[1] / "tools")
    roots += [Path.cwd(), Path.cwd() / "tools"]
    return [r / "eval_utils" / "eval_utils.py" for r in roots]


def import_eval_utils(pcdet: ModuleType) -> ModuleType:
    """OpenPCDet's ``eval_utils`` module (it lives in OpenPCDet's ``tools/``, not in ``pcdet``)."""
    name = "pcdet_ext_openpcdet_eval_utils"
    if name in sys.modules:
        return sys.modules[name]
    candidates = eval_utils_candidates(pcdet)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise PcdetMissing("OpenPCDet's tools/eval_utils/eval_utils.py was not found (looked in "
                           f"{', '.join(str(p) for p in candidates)}); install OpenPCDet from its source "
                           "checkout (python setup.py develop) or set OPENPCDET_ROOT to the checkout.")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ---------------------------------------------------------------------------------------------
# Config and quant section
# ---------------------------------------------------------------------------------------------
def load_pcdet_config(pcdet: SimpleNamespace, cfg_path: str | Path, set_cfgs: Sequence[str] | None = None) -> Any:
    """A fresh OpenPCDet config (not the global ``pcdet.config.cfg``), as OpenPCDet's test.py
    builds it: ``cfg_from_yaml_file``, ``TAG``, ``EXP_GROUP_PATH``, then ``cfg_from_list``."""
    cfg_file = Path(cfg_path)
    if not cfg_file.is_file():
        raise FileNotFoundError(f"--cfg_file not found: {cfg_file}")
    base = pcdet.config.cfg
    cfg = type(base)()
    cfg.ROOT_DIR = base.ROOT_DIR
    cfg.LOCAL_RANK = 0
    try:
        pcdet.config.cfg_from_yaml_file(str(cfg_file), cfg)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{cfg_file}: {err.filename or err} not found; OpenPCDet configs name their "
                                "_BASE_CONFIG_ relative to OpenPCDet's tools/ folder: run from there") from None
    cfg.TAG = cfg_file.stem
    cfg.EXP_GROUP_PATH = "/".join(str(cfg_path).split("/")[1:-1])  # as OpenPCDet: drops 'cfgs' and the file
    if set_cfgs:
        try:
            pcdet.config.cfg_from_list(list(set_cfgs), cfg)
        except (AssertionError, KeyError, ValueError, TypeError) as err:
            raise ValueError(f"--set {' '.join(set_cfgs)}: {err or type(err).__name__}") from None
    return cfg


def quant_section(cfg: Mapping[str, Any], quant_cfg: Path | None) -> dict[str, Any]:
    """The config's ``QUANT`` section with ``--quant_cfg``'s top-level keys laid over it."""
    for key in cfg:
        if key != QUANT_KEY and str(key).lower() == QUANT_KEY.lower():
            raise ConfigError(str(key), f"the quant section of an OpenPCDet config is the top-level key "
                              f"{QUANT_KEY!r} (upper case, as OpenPCDet's own keys)", allowed=QUANT_KEY)
    section = cfg.get(QUANT_KEY)
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(QUANT_KEY, "expected a mapping", section)
    return merge_quant_section(section, quant_cfg, "--quant_cfg")


def calib_options(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The quant section's ``calib`` key: ``{split: train|test, batch_size, seed, augment}``.

    ``split: train`` reads train frames through the test pipeline (no augmentation, no class
    balancing) unless ``augment: true`` (OpenPCDet's training pipeline, as QDrop's calibration)."""
    data = dict(section or {})
    check_keys(data, CALIB_DEFAULTS.keys(), "calib")
    out = {
        "split": get_choice(data, "split", CALIB_DEFAULTS["split"], "calib", ["train", "test"]),
        "batch_size": get_int(data, "batch_size", CALIB_DEFAULTS["batch_size"], "calib", 1),
        "seed": get_int(data, "seed", CALIB_DEFAULTS["seed"], "calib", 0),
        "augment": get_bool(data, "augment", CALIB_DEFAULTS["augment"], "calib"),
    }
    if out["augment"] and out["split"] != "train":
        raise ConfigError("calib.augment", "augmentation is OpenPCDet's training pipeline: needs split: train",
                          out["augment"])
    return out


def parse_quant(data: Mapping[str, Any]) -> tuple[QuantConfig, dict[str, Any]]:
    """The validated quant config and calibration options."""
    qcfg = QuantConfig.from_dict(data, extra_keys=EXTRA_KEYS)
    return qcfg, calib_options(qcfg.extra.get("calib"))


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def read_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    """The checkpoint dict, read with ``torch.load(weights_only=True)`` unless ``trust``."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: torch.load(weights_only=True) refuses it ({first}); if you trust the file, "
                         "pass --trust_ckpt to unpickle it fully") from None
    if not isinstance(ckpt, dict):
        raise TypeError(f"{path} is not a checkpoint dict (got {type(ckpt).__name__})")
    return ckpt


def is_quantized(ckpt: Mapping[str, Any]) -> bool:
    meta = ckpt.get("meta")
    return isinstance(meta, Mapping) and meta.get("format") == FORMAT


def fp_state_dict(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The model weights of an FP checkpoint: OpenPCDet's ``model_state``, a ``state_dict`` entry,
    or a bare state dict."""
    for key in ("model_state", "state_dict"):
        if key in ckpt:
            state = ckpt[key]
            if not isinstance(state, Mapping):
                raise ValueError(f"{path}: {key!r} is not a state dict (got {type(state).__name__})")
            return dict(state)
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return dict(ckpt)
    raise ValueError(f"{path} holds no model weights: expected OpenPCDet's 'model_state' key; found "
                     f"{sorted(map(str, ckpt))[:8]}")


def adapt_spconv_layout(model: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with sparse-conv weights of another spconv layout permuted to this model's layout,
    as OpenPCDet does on loading (spconv 1.x stores ``[*kernel, in, out]``; 2.x ``[out, *kernel, in]``,
    older 2.x ``[*kernel, out, in]``). A weight that matches no layout is left for the strict check
    to report."""
    out = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, SparseConvolution):
            continue
        key = f"{name}.weight" if name else "weight"
        value = out.get(key)
        target = module.weight.shape
        if not isinstance(value, Tensor) or value.shape == target or value.dim() != len(target):
            continue
        for candidate in (value.transpose(-1, -2), value.movedim(-1, 0)):
            if candidate.shape == target:
                out[key] = candidate.contiguous()
                break
    return out


def load_fp_weights(model: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Loads FP weights strictly: every key of the model present with its shape, no other key."""
    state = adapt_spconv_layout(model, state)
    own = model.state_dict()
    reshaped = [k for k, v in state.items() if k in own and isinstance(v, Tensor) and v.shape != own[k].shape]
    if reshaped:
        k = reshaped[0]
        raise KeyError(f"{what} does not match the model: {len(reshaped)} keys with other shapes (e.g. {k}: "
                       f"{tuple(state[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model)")
    load_strict(model, state, what)


# ---------------------------------------------------------------------------------------------
# The detector: forward without post-processing, head outputs, batches
# ---------------------------------------------------------------------------------------------
def check_supported(model: nn.Module) -> None:
    """A detector this adapter runs: OpenPCDet's ``module_list`` with a ``dense_head`` that has
    ``heads_list`` (VoxelNeXt's sparse heads) and no module after it (no second stage)."""
    modules = list(getattr(model, "module_list", None) or [])
    head = getattr(model, "dense_head", None)
    if not modules or head is None or not hasattr(head, "heads_list"):
        raise ValueError(f"{type(model).__name__}: only single-stage detectors with a sparse dense_head "
                         "holding heads_list (VoxelNeXt) are supported")
    if not any(m is head for m in modules) or modules[-1] is not head:
        raise ValueError(f"{type(model).__name__}: modules after the dense head (a second stage) are not supported")


def head_forward(model: nn.Module, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
    """Every head's branch outputs (``[{name: features}]``): the modules before the dense head, then
    each of its ``heads_list`` on the sparse BEV features, without post-processing. ``batch`` is not
    changed (the modules write into a shallow copy)."""
    data = dict(batch)
    head = model.dense_head
    for module in model.module_list:
        if module is head:
            x = data["encoded_spconv_tensor"]
            return [h(x) for h in head.heads_list]
        data = module(data)
    raise ValueError("the model's module_list does not hold its dense_head")


def head_outputs(model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
    """All head branches' features of all heads, in a fixed order: the RD distortion target."""
    return [t for pred in head_forward(model, batch) for t in pred.values()]


NON_TENSOR_KEYS = ("frame_id", "metadata", "calib", "image_paths", "ori_shape", "img_process_infos")


def _to_tensor(key: str, value: np.ndarray) -> Tensor:
    if key == "images":  # [B, H, W, C] -> [B, C, H, W], as kornia.image_to_tensor
        t = torch.from_numpy(value)
        return (t.permute(0, 3, 1, 2) if t.dim() == 4 else t.permute(2, 0, 1)).float().contiguous()
    if key == "image_shape":
        return torch.from_numpy(value).int()
    return torch.from_numpy(value).float()


def load_data_to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """OpenPCDet's ``load_data_to_gpu`` for any device, in place (numpy arrays -> float tensors,
    ``image_shape`` int, ``images`` channels first; ids and metadata untouched); tensors are moved."""
    for key, value in list(batch.items()):
        if isinstance(value, Tensor):
            batch[key] = value.to(device)
        elif isinstance(value, np.ndarray) and key not in NON_TENSOR_KEYS:
            batch[key] = _to_tensor(key, value).to(device)
    return batch


def batch_on(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A shallow copy of ``batch`` with its tensors on ``device``."""
    return load_data_to_device(dict(batch), device)


def make_run(device: torch.device) -> tuple[Callable[[nn.Module, Any], Any], Callable[[nn.Module, Any], list[Tensor]]]:
    """``run(model, batch)`` and ``outputs(model, batch)`` for :func:`quantize_sparse_detector`."""

    def run(model: nn.Module, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        return head_forward(model, batch_on(batch, device))

    def outputs(model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
        return head_outputs(model, batch_on(batch, device))

    return run, outputs


def frames(batch: Mapping[str, Any]) -> int:
    return int(batch["batch_size"])


def copy_detector(model: nn.Module) -> nn.Module:
    """A deep copy sharing the (large, read-only) dataset OpenPCDet detectors keep a reference to."""
    memo: dict[int, Any] = {}
    dataset = getattr(model, "dataset", None)
    if dataset is not None:
        memo[id(dataset)] = dataset
    return copy.deepcopy(model, memo)


def remaining_batchnorms(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------
def calib_dataset_cfg(data_cfg: Any, split: str, augment: bool) -> tuple[Any, bool]:
    """The dataset config and ``training`` flag calibration frames are read with.

    OpenPCDet datasets read ``INFO_PATH[mode]`` / ``DATA_SPLIT[mode]`` with mode ``test`` when
    ``training=False``; train frames without augmentation point the test entries at the train ones."""
    out = copy.deepcopy(data_cfg)
    if split == "test":
        return out, False
    if augment:
        return out, True
    for key in ("INFO_PATH", "DATA_SPLIT"):
        entry = out.get(key)
        if isinstance(entry, Mapping) and "train" in entry:
            entry["test"] = copy.deepcopy(entry["train"])
    return out, False


def check_calib_size(num_frames: int, dataset_len: int) -> None:
    if num_frames > dataset_len:
        raise ConfigError("calibrate", f"more calibration frames than the calibration split has ({dataset_len})",
                          num_frames, f"an integer in [1, {dataset_len}]")


def _seed_worker(worker: int, seed: int) -> None:
    np.random.seed(seed + 1 + worker)


def calib_batches(dataset: Any, num_frames: int, batch_size: int, seed: int, workers: int = 0) -> list[dict[str, Any]]:
    """``num_frames`` frames (a fixed random subset, ``seed``) collated by the dataset's own
    ``collate_batch`` into batches of ``batch_size``, as CPU tensors."""
    check_calib_size(num_frames, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_frames].tolist()
    np.random.seed(seed)  # OpenPCDet's point shuffling and augmentation draw from numpy
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=dataset.collate_batch, worker_init_fn=functools.partial(_seed_worker, seed=seed))
    return [load_data_to_device(dict(b), "cpu") for b in loader]


# ---------------------------------------------------------------------------------------------
# Distributed
# ---------------------------------------------------------------------------------------------
def init_distributed(launcher: str, local_rank: int | None) -> tuple[int, int]:
    """``(rank, world)``; ``--launcher pytorch`` joins the torchrun group (nccl on GPU, gloo on CPU)."""
    if launcher == "none":
        return 0, 1
    if launcher != "pytorch":
        raise ValueError(f"--launcher {launcher!r}: allowed none, pytorch")
    if local_rank is not None:
        os.environ["LOCAL_RANK"] = str(local_rank)
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=DIST_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
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
    data_key: str
    batch_size: int
    workers: int
    save_to_file: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def default_work_dir(cfg: Any, extra_tag: str) -> Path:
    """OpenPCDet's checkpoint folder of this experiment: ``output/<group>/<tag>/<extra_tag>/ckpt``."""
    return Path(cfg.ROOT_DIR) / "output" / cfg.EXP_GROUP_PATH / cfg.TAG / extra_tag / "ckpt"


def checkpoint_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def prepare(args: Any, need_test: bool = True, need_calib: bool = True, need_eval: bool = True,
            rdoq_flags: bool = False) -> Prepared:
    """Validates every input and builds data and model; writes nothing.

    ``args``: the parsed flags of :mod:`pcdet_ext.cli` (``cfg_file``, ``ckpt``, ``set_cfgs``,
    ``quant_cfg``, ``work_dir``, ``batch_size``, ``workers``, ``extra_tag``, ``launcher``,
    ``local_rank``, ``trust_ckpt``, ``save_to_file``; with ``rdoq_flags`` the RDOQ flags, laid over
    the ``rdoq`` section)."""
    start = time.time()
    pcdet = import_pcdet(need_eval)
    if not torch.cuda.is_available():
        apply_cpu_patches()
    cfg = load_pcdet_config(pcdet, args.cfg_file, args.set_cfgs)
    qcfg, calib = parse_quant(quant_section(cfg, args.quant_cfg))
    if rdoq_flags:
        qcfg = replace(qcfg, rdoq=rdoq_from_flags(qcfg.rdoq, args))
    checkpoint = Path(args.ckpt)
    ckpt = read_checkpoint(checkpoint, getattr(args, "trust_ckpt", False))
    quantized = is_quantized(ckpt)
    state = None if quantized else fp_state_dict(ckpt, checkpoint)
    del ckpt
    rank, world = init_distributed(args.launcher, args.local_rank)
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
        if args.quant_cfg is not None or cfg.get(QUANT_KEY):
            logger.warning("%s is a quantized checkpoint: its stored quant config is used, not the config's %s "
                           "section or --quant_cfg", checkpoint, QUANT_KEY)
        model, qcfg = load_quantized(fuse_conv_bn(model), checkpoint, extra_keys=EXTRA_KEYS)
        calib = calib_options(qcfg.extra.get("calib"))
    else:
        assert state is not None
        load_fp_weights(model, state, f"checkpoint {checkpoint}")
        fuse_conv_bn(model)
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
    work_dir = Path(args.work_dir) if args.work_dir is not None else default_work_dir(cfg, args.extra_tag)
    # What RD curves depend on besides their own settings: model, weights, layers and calibration data.
    qdict = qcfg.to_dict()
    data_key = spec_hash(plain(cfg.MODEL), plain(cfg.DATA_CONFIG), list(cfg.CLASS_NAMES),
                         checkpoint_identity(checkpoint), qcfg.calibrate, calib, qdict["overrides"],
                         qcfg.w_qconfig.ch_axis, qcfg.a_qconfig.ch_axis)
    prep = Prepared(pcdet, cfg, Path(args.cfg_file), qcfg, calib, checkpoint, work_dir, model.to(device).eval(),
                    quantized, test_set if need_test else None, test_loader if need_test else None, calib_set,
                    device, rank, world, pcdet_logger, data_key, batch_size, args.workers,
                    bool(getattr(args, "save_to_file", False)))
    prep.timings["prepare"] = time.time() - start
    return prep


def progress_bars(rank: int) -> Callable[[str], Callable[[Iterable[Any]], Iterable[Any]]] | None:
    if rank != 0:
        return None
    from tqdm import tqdm

    return lambda stage: (lambda it: tqdm(it, desc=stage, mininterval=5.0, leave=False))


def calibration_data(prep: Prepared) -> list[dict[str, Any]]:
    if prep.calib_set is None:
        raise ValueError("no calibration split was prepared")
    start = time.time()
    batches = calib_batches(prep.calib_set, prep.qcfg.calibrate, prep.calib["batch_size"], prep.calib["seed"],
                            prep.workers)
    prep.timings["calib_data"] = time.time() - start
    return batches


def quantize(prep: Prepared, qcfg: QuantConfig | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A quantized copy of the FP model: calibration, RDOQ allocation (``rdoq``), QDrop
    reconstruction (``recon``), with gradients enabled. Returns the model and the runner's report."""
    if prep.quantized_checkpoint:
        raise ValueError(f"{prep.checkpoint} is quantized already; evaluate it with test.py")
    qcfg = qcfg or prep.qcfg
    batches = calibration_data(prep)
    run, outputs = make_run(prep.device)
    model = copy_detector(prep.model)
    with torch.enable_grad():
        model, report = quantize_sparse_detector(
            model, prep.model, batches, run, outputs, qcfg, work_dir=prep.work_dir, data_key=prep.data_key,
            images=frames, seed=prep.calib["seed"], progress=progress_bars(prep.rank))
    prep.timings.update({k.removesuffix("_s"): v for k, v in report.get("timings", {}).items()})
    return model, report


def quantize_on_rank0(prep: Prepared) -> tuple[nn.Module, dict[str, Any] | None]:
    """:func:`quantize` on rank 0, which writes ``quantized.pth``; the other ranks wait, then load it."""
    path = prep.work_dir / "quantized.pth"
    report = None
    if prep.rank == 0:
        model, report = quantize(prep)
        save_checkpoint(prep, model, path)
    barrier()
    if prep.rank != 0:
        structure = prep.pcdet.build_network(model_cfg=prep.cfg.MODEL, num_class=len(prep.cfg.CLASS_NAMES),
                                             dataset=prep.test_set)
        model, _ = load_quantized(fuse_conv_bn(structure), path, extra_keys=EXTRA_KEYS)
        model = model.to(prep.device).eval()
    return model, report


def save_checkpoint(prep: Prepared, model: nn.Module, path: Path) -> None:
    meta = {"cfg_file": str(prep.cfg_file), "fp_checkpoint": str(prep.checkpoint),
            "CLASS_NAMES": list(prep.cfg.CLASS_NAMES)}
    save_quantized(model, prep.qcfg, path, meta)


def evaluate(prep: Prepared, model: nn.Module, tag: str) -> dict[str, float]:
    """OpenPCDet's ``eval_one_epoch`` on the test split (results under ``work_dir/eval/<tag>``);
    the numeric metrics as it returns them (non-numeric entries dropped; rank 0, the others get
    ``{}``)."""
    if prep.test_loader is None:
        raise ValueError("no test split was prepared")
    eval_utils = prep.pcdet.eval_utils
    device = prep.device
    if device.type != "cuda":  # OpenPCDet's load_data_to_gpu calls .cuda()
        eval_utils.load_data_to_gpu = lambda batch: load_data_to_device(batch, device)
    if prep.world > 1:  # eval_one_epoch wraps the model in DDP, which wants a parameter with grad
        for p in model.parameters():
            p.requires_grad_(True)
    eval_args = SimpleNamespace(save_to_file=prep.save_to_file, infer_time=False)
    np.random.seed(EVAL_SEED)  # test-time point shuffling: the same for the FP and the quantized model
    start = time.time()
    with torch.no_grad():
        ret = eval_utils.eval_one_epoch(prep.cfg, eval_args, model, prep.test_loader, tag, prep.pcdet_logger,
                                        dist_test=prep.world > 1, result_dir=prep.work_dir / "eval" / tag)
    prep.timings[f"eval_{tag}"] = time.time() - start
    return {str(k): float(v) for k, v in (ret or {}).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def method_name(qcfg: QuantConfig) -> str:
    if qcfg.rdoq is not None:
        return "rdoq+qdrop" if qcfg.recon is not None else "rdoq"
    return "qdrop" if qcfg.recon is not None else "ptq"


def build_report(prep: Prepared, model: nn.Module, fp: Mapping[str, float], quant: Mapping[str, float],
                 run_report: Mapping[str, Any] | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "model": str(prep.cfg_file),
        "checkpoint": str(prep.checkpoint),
        "method": method_name(prep.qcfg),
        "fp": dict(fp),
        "quant": dict(quant),
        "bits": bit_stats(model),
        "size_bytes": size_bytes(model),
        "time_s": {k: round(v, 2) for k, v in prep.timings.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "world_size": prep.world,
        "calib": dict(prep.calib),
        "quant_config": prep.qcfg.to_dict(),
    }
    if torch.cuda.is_available():
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if run_report is not None:
        report["frames"] = run_report.get("frames")
        report["quantized_layers"] = run_report.get("quantized_layers")
        if "rdoq" in run_report:
            report["rdoq"] = run_report["rdoq"]
        if "recon" in run_report:
            report["recon_units"] = run_report["recon"]
    return report


def write_report(prep: Prepared, report: Mapping[str, Any]) -> None:
    if prep.rank == 0:
        atomic_write_text(json.dumps(report, indent=2, default=str) + "\n", prep.work_dir / "report.json")


def print_table(report: Mapping[str, Any]) -> None:
    """FP vs quantized metrics (mAP and NDS first when present), with the bits."""
    keys = [k for k in HEAD_METRICS if k in report["fp"] or k in report["quant"]]
    if not keys:
        keys = sorted(set(report["fp"]) | set(report["quant"]))[:4]
    bits = report["bits"]
    rows = [("FP32", "32/32", report["fp"]),
            (report["method"], f"{bits['weight_avg']:.3g}/{bits['act_avg']:.3g}", report["quant"])]
    print(f"\n{'model':<12}{'W/A':>12}" + "".join(f"{k[-12:]:>14}" for k in keys))
    for name, wa, metrics in rows:
        if metrics:
            print(f"{name:<12}{wa:>12}" + "".join(f"{metrics.get(k, float('nan')):>14.4f}" for k in keys))


# ---------------------------------------------------------------------------------------------
# The RDOQ steps alone
# ---------------------------------------------------------------------------------------------
def rd_structure(prep: Prepared, qcfg: QuantConfig) -> tuple[nn.Module, dict[str, QuantLayer]]:
    """A quantized copy of the FP model (not calibrated: curves and allocations set their own
    grids) and the layers the allocation covers."""
    if prep.quantized_checkpoint:
        raise ValueError(f"{prep.checkpoint} is quantized already; RD curves and allocations need the FP checkpoint")
    model = copy_detector(prep.model)
    quantize_sparse_model(model, qcfg)
    layers = rd_layers({n: m for n, m in model.named_modules() if isinstance(m, QuantLayer)}, qcfg)
    return model, layers


def generate_curves(prep: Prepared, cfg: RDOQConfig) -> dict[str, Any]:
    """RD curves of every allocated layer into ``work_dir/rd_curves/<hash>/`` (the missing ones only)."""
    qcfg = replace(prep.qcfg, rdoq=cfg)
    batches = calibration_data(prep)
    _, outputs = make_run(prep.device)
    model, layers = rd_structure(prep, qcfg)
    store = curve_store(prep.work_dir / CURVE_DIR, cfg, prep.data_key)
    rd_batches = curve_batches(batches, cfg, frames)
    bars = progress_bars(prep.rank)
    start = time.time()
    with torch.enable_grad():
        curves, computed = compute_curves(model, layers, rd_batches, outputs, cfg, store, frames,
                                          bars(f"RD curves ({cfg.estimator.value})") if bars else None)
    return {"dir": str(store.dir), "computed": computed, "reused": len(curves) - computed, "layers": len(layers),
            "groups": sum(c.num_groups for c in curves.values()), "frames": sum(frames(b) for b in rd_batches),
            "time_s": round(time.time() - start, 2)}


def allocate(prep: Prepared, cfg: RDOQConfig) -> dict[str, Any]:
    """Allocations for every target rate from the stored curves, the additivity check
    (``cfg.additivity``), and ``work_dir/rd_alloc/``: ``rate_<r>.json`` (per-group choices),
    ``summary.json``, ``rd_curves.png`` and ``bits_heatmap.png``."""
    qcfg = replace(prep.qcfg, rdoq=cfg)
    model, layers = rd_structure(prep, qcfg)
    store = curve_store(prep.work_dir / CURVE_DIR, cfg, prep.data_key)
    keys = curve_keys(layers, cfg.target)
    missing = store.missing(keys)
    if missing:
        raise FileNotFoundError(f"{len(missing)} RD curves are missing from {store.dir} (e.g. {missing[0][0]}); "
                                "run tools/pcdet/gen_rd_curves.py with the same config and work dir first")
    curves = [store.load(*key) for key in keys]
    table = curve_table(curves, cfg.min_bits)
    allocs = allocate_rates(table, cfg)
    if cfg.additivity:
        batches = curve_batches(calibration_data(prep), cfg, frames)
        _, outputs = make_run(prep.device)
        measure_allocations(model, layers, table, allocs, batches, outputs)
    for a in allocs:
        a.layer_bits = apply_choice(layers, table, a.choice)
    summary = alloc_summary(cfg, table, allocs, str(store.dir))
    if prep.rank == 0:
        out = prep.work_dir / ALLOC_DIR
        atomic_write_text(json.dumps(summary, indent=2) + "\n", out / "summary.json")
        write_allocations(out, table, allocs, optional_plots=True)  # matplotlib is optional here
    return summary


__all__ = [
    "CALIB_DEFAULTS",
    "EXTRA_KEYS",
    "QUANT_KEY",
    "PcdetMissing",
    "Prepared",
    "adapt_spconv_layout",
    "allocate",
    "batch_on",
    "build_report",
    "calib_batches",
    "calib_dataset_cfg",
    "calib_options",
    "check_supported",
    "evaluate",
    "fp_state_dict",
    "generate_curves",
    "head_forward",
    "head_outputs",
    "import_pcdet",
    "is_quantized",
    "load_data_to_device",
    "load_fp_weights",
    "parse_quant",
    "prepare",
    "quant_section",
    "quantize",
    "quantize_on_rank0",
    "read_checkpoint",
    "write_report",
]
