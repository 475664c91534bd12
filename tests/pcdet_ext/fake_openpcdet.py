"""A stand-in OpenPCDet checkout for testing the adapter's orchestration without OpenPCDet.

:func:`write_fake_openpcdet` writes a tiny ``pcdet`` package and ``tools/`` folder with the
interfaces the adapter calls (``pcdet.config.cfg`` / ``cfg_from_yaml_file`` / ``cfg_from_list``,
``pcdet.datasets.build_dataloader``, ``pcdet.models.build_network`` / ``load_data_to_gpu``,
``pcdet.utils.common_utils.create_logger``, ``tools/eval_utils/eval_utils.eval_one_epoch``), backed
by the VoxelNeXt-shaped toy of :mod:`rdoq_bench.voxelnext_toy`. Like the real ones, the model
keeps ``module_list`` = [vfe, backbone_3d, dense_head] and a ``global_step`` buffer, the head's own
forward post-processes (and counts its calls), ``load_data_to_gpu`` calls ``.cuda()``, datasets
read ``INFO_PATH[mode]`` with mode ``train`` / ``test`` from ``training``, and configs name their
``_BASE_CONFIG_`` relative to ``tools/``. The behaviour is written from OpenPCDet's documented
interfaces; no OpenPCDet code is copied.

Dataset infos are ``"<seed>:<count>"`` strings: frames are toy scenes ``seed .. seed + count - 1``;
every frame read is appended to ``pcdet.datasets.READS`` as ``(mode, seed)``.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

CONFIG_PY = '''
import ast
from pathlib import Path

import yaml


class AttrDict(dict):
    """A dict with attribute access (EasyDict's role)."""

    def __init__(self, data=None):
        super().__init__()
        for k, v in (data or {}).items():
            self[k] = AttrDict(v) if isinstance(v, dict) and not isinstance(v, AttrDict) else v

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def _merge(config, new):
    if "_BASE_CONFIG_" in new:
        with open(new["_BASE_CONFIG_"]) as f:
            config.update(AttrDict(yaml.safe_load(f)))
    for key, val in new.items():
        if isinstance(val, dict):
            if key not in config or not isinstance(config[key], dict):
                config[key] = AttrDict()
            _merge(config[key], val)
        else:
            config[key] = val
    return config


def cfg_from_yaml_file(cfg_file, config):
    with open(cfg_file) as f:
        return _merge(config, yaml.safe_load(f))


def cfg_from_list(cfg_list, config):
    assert len(cfg_list) % 2 == 0
    for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
        d = config
        *parents, last = key.split(".")
        for p in parents:
            assert p in d, "NotFoundKey: %s" % p
            d = d[p]
        assert last in d, "NotFoundKey: %s" % last
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        assert type(value) == type(d[last]), "type mismatch for %s" % key
        d[last] = value


cfg = AttrDict()
cfg.ROOT_DIR = Path(__file__).resolve().parent.parent
cfg.LOCAL_RANK = 0
'''

DATASETS_PY = '''
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import torch

from rdoq_bench import voxelnext_toy as toy

READS = []
_SCENES = {}


def _scene(seed):
    if seed not in _SCENES:
        _SCENES[seed] = toy.make_scene(seed)
    return _SCENES[seed]


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, dataset_cfg, class_names, training=True, root_path=None, logger=None):
        self.dataset_cfg = dataset_cfg
        self.class_names = list(class_names)
        self.training = training
        self.mode = "train" if training else "test"
        self.seeds = []
        for info in dataset_cfg.INFO_PATH[self.mode]:
            start, count = (int(v) for v in str(info).split(":"))
            self.seeds += list(range(start, start + count))
        self.point_feature_encoder = SimpleNamespace(num_point_features=4)
        self.grid_size = np.array(toy.GRID_SIZE)
        self.point_cloud_range = np.array(toy.POINT_CLOUD_RANGE, dtype=np.float32)
        self.voxel_size = list(toy.VOXEL_SIZE)
        self.depth_downsample_factor = None

    def __len__(self):
        return len(self.seeds)

    def __getitem__(self, index):
        seed = self.seeds[index]
        READS.append((self.mode, seed))
        s = _scene(seed)
        return {"voxels": s.voxel_features.numpy()[:, None, :].copy(),
                "voxel_num_points": np.ones(len(s.voxel_features), dtype=np.int32),
                "voxel_coords": s.voxel_coords.numpy().astype(np.int32),
                "gt_boxes": s.gt_boxes.numpy(), "frame_id": str(seed)}

    @staticmethod
    def collate_batch(batch_list, _unused=False):
        data = defaultdict(list)
        for sample in batch_list:
            for k, v in sample.items():
                data[k].append(v)
        out = {"voxels": np.concatenate(data["voxels"]), "voxel_num_points": np.concatenate(data["voxel_num_points"]),
               "voxel_coords": np.concatenate([np.pad(c, ((0, 0), (1, 0)), constant_values=i)
                                               for i, c in enumerate(data["voxel_coords"])]),
               "frame_id": np.array(data["frame_id"])}
        k = max(len(b) for b in data["gt_boxes"])
        gt = np.zeros((len(batch_list), k, 8), dtype=np.float32)
        for i, b in enumerate(data["gt_boxes"]):
            gt[i, : len(b)] = b
        out["gt_boxes"] = gt
        out["batch_size"] = len(batch_list)
        return out


__all__ = {"ToyDataset": ToyDataset}


def build_dataloader(dataset_cfg, class_names, batch_size, dist, root_path=None, workers=4, seed=None,
                     logger=None, training=True, merge_all_iters_to_one_epoch=False, total_epochs=0):
    dataset = __all__[dataset_cfg.DATASET](dataset_cfg=dataset_cfg, class_names=class_names, root_path=root_path,
                                           training=training, logger=logger)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=dataset.collate_batch)
    return dataset, loader, None
'''

MODELS_PY = '''
import numpy as np
import torch
from torch import nn

from rdoq_bench import voxelnext_toy as toy

HEAD_FORWARD_CALLS = [0]


class MeanVFE(nn.Module):
    def forward(self, batch_dict):
        voxels, num = batch_dict["voxels"], batch_dict["voxel_num_points"]
        batch_dict["voxel_features"] = (voxels.sum(dim=1) / num.clamp(min=1).view(-1, 1).type_as(voxels)).contiguous()
        return batch_dict


class Backbone(toy.VoxelResBackBone8xVoxelNeXt):
    def forward(self, batch_dict):
        batch_dict["encoded_spconv_tensor"] = super().forward(batch_dict)
        return batch_dict


class Head(toy.VoxelNeXtHead):
    def forward(self, data_dict):  # with post-processing, as VoxelNeXtHead in eval mode
        HEAD_FORWARD_CALLS[0] += 1
        x = data_dict["encoded_spconv_tensor"]
        preds = [head(x) for head in self.heads_list]
        out = {"pred_dicts": preds, "voxel_indices": x.indices, "batch_size": x.batch_size}
        data_dict["final_box_dicts"] = toy.decode(out)
        return data_dict


class ToyVoxelNeXt(nn.Module):
    def __init__(self, model_cfg, num_class, dataset):
        super().__init__()
        self.model_cfg = model_cfg
        self.dataset = dataset
        self.class_names = dataset.class_names
        self.register_buffer("global_step", torch.LongTensor(1).zero_())
        torch.manual_seed(int(model_cfg.get("SEED", 0)))
        narrow = dict(toy.NARROW) if model_cfg.get("NARROW", True) else {}
        self.vfe = MeanVFE()
        self.backbone_3d = Backbone(4, toy.GRID_SIZE, blocks=int(model_cfg.get("BLOCKS", 1)),
                                    **{k: v for k, v in narrow.items()})
        self.dense_head = Head(narrow.get("out_channel", toy.OUT_CHANNEL))
        self.module_list = [self.vfe, self.backbone_3d, self.dense_head]

    def forward(self, batch_dict):
        for module in self.module_list:
            batch_dict = module(batch_dict)
        return batch_dict["final_box_dicts"], {}


def build_network(model_cfg, num_class, dataset):
    return ToyVoxelNeXt(model_cfg, num_class, dataset)


def load_data_to_gpu(batch_dict):
    for key, val in batch_dict.items():
        if isinstance(val, np.ndarray) and key not in ("frame_id", "metadata", "calib"):
            batch_dict[key] = torch.from_numpy(val).float().cuda()
'''

COMMON_UTILS_PY = '''
import logging


def create_logger(log_file=None, rank=0, log_level=logging.INFO):
    logger = logging.getLogger("fake_pcdet")
    logger.setLevel(log_level if rank == 0 else "ERROR")
    return logger
'''

EVAL_UTILS_PY = '''
import pickle

import torch

from pcdet.models import load_data_to_gpu
from rdoq_bench import voxelnext_toy as toy


def eval_one_epoch(cfg, args, model, dataloader, epoch_id, logger, dist_test=False, result_dir=None):
    result_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    dets, gts = [], []
    for batch_dict in dataloader:
        load_data_to_gpu(batch_dict)
        with torch.no_grad():
            pred_dicts, _ = model(batch_dict)
        dets.extend(pred_dicts)
        gts.extend(b[b[:, 7] > 0].cpu() for b in batch_dict["gt_boxes"])
    with open(result_dir / "result.pkl", "wb") as f:
        pickle.dump(dets, f)
    metrics = toy.bev_map(dets, gts)
    ret = {"recall/roi_0.3": 0.0, "mAP": metrics["mAP"], "note": "fake"}
    ret.update({"AP_" + k: v for k, v in metrics["AP"].items()})
    return ret
'''

DATASET_YAML = """
DATASET: ToyDataset
DATA_PATH: ../data/toy
INFO_PATH: {train: ['100:6'], test: ['0:3']}
DATA_SPLIT: {train: train, test: val}
"""

MODEL_YAML = """
CLASS_NAMES: ['car', 'truck', 'pedestrian']
DATA_CONFIG:
    _BASE_CONFIG_: cfgs/dataset_configs/toy_dataset.yaml
MODEL:
    NAME: ToyVoxelNeXt
    NARROW: True
    BLOCKS: 1
    POST_PROCESSING: {RECALL_THRESH_LIST: [0.3], EVAL_METRIC: toy}
OPTIMIZATION:
    BATCH_SIZE_PER_GPU: 2
"""


def write_fake_openpcdet(root: Path) -> Path:
    """Writes the stand-in checkout under ``root``; returns ``root``. Put ``root`` on ``sys.path``
    and run the tools from ``root / "tools"``; the model config is
    ``cfgs/toy_models/voxelnext_toy.yaml``."""
    files = {
        "pcdet/__init__.py": "__version__ = '0.0+fake'\n",
        "pcdet/config.py": CONFIG_PY,
        "pcdet/datasets/__init__.py": DATASETS_PY,
        "pcdet/models/__init__.py": MODELS_PY,
        "pcdet/utils/__init__.py": "",
        "pcdet/utils/common_utils.py": COMMON_UTILS_PY,
        "tools/eval_utils/eval_utils.py": EVAL_UTILS_PY,
        "tools/cfgs/dataset_configs/toy_dataset.yaml": DATASET_YAML,
        "tools/cfgs/toy_models/voxelnext_toy.yaml": MODEL_YAML,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root
