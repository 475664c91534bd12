"""The VoxelNeXt-shaped toy detector: a small spconv model with the module structure and the names
of OpenPCDet's ``VoxelResBackBone8xVoxelNeXt`` and ``VoxelNeXtHead`` (Chen et al., "VoxelNeXt",
CVPR 2023), so the adapter (``pcdet_ext.units``) recognizes both the same way:

* ``backbone_3d``: ``conv_input`` (SubMConv3d + BN1d + ReLU), ``conv1`` (SparseBasicBlocks),
  ``conv2`` .. ``conv6`` (a stride-2 SparseConv3d block, then SparseBasicBlocks), the sparse BEV
  map (``conv4`` sites plus ``conv5`` / ``conv6`` sites rescaled in place, z summed out per
  (batch, y, x)), ``conv_out`` (SparseConv2d) and ``shared_conv`` (SubMConv2d);
* ``dense_head``: ``heads_list`` of SeparateHeads, each with one branch per output (``center``,
  ``center_z``, ``dim``, ``rot``, ``hm``): a 1x1 SubMConv2d + BN1d + ReLU, then a 1x1 SubMConv2d.

Also the classes and the voxel grid the scenes (:mod:`rdoq_bench.voxelnext_scenes`), the training
(:mod:`rdoq_bench.voxelnext_train`) and the metric (:mod:`rdoq_bench.voxelnext_eval`) share.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import spconv.pytorch as spconv
import torch
from torch import Tensor, nn

CLASS_NAMES = ("car", "truck", "pedestrian")
CLASS_NAMES_EACH_HEAD = (("car", "truck"), ("pedestrian",))
HEAD_DICT = {"center": 2, "center_z": 1, "dim": 3, "rot": 2}  # + "hm" (one channel per class of the head)

POINT_CLOUD_RANGE = (-20.0, -20.0, -2.0, 20.0, 20.0, 2.0)
VOXEL_SIZE = (0.2, 0.2, 0.2)
GRID_SIZE = (200, 200, 20)  # x, y, z
FEATURE_STRIDE = 8  # the sparse BEV map's stride in voxels
CHANNELS = (16, 32, 64, 128, 128)
OUT_CHANNEL = 128
NARROW = {"channels": (8, 16, 16, 32, 32), "out_channel": 32}  # a faster copy for tests


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


def conv_block(cin: int, cout: int, kernel: int, indice_key: str, stride: int = 1, padding: int = 0,
               conv_type: str = "subm") -> spconv.SparseSequential:
    """Sparse conv (no bias) + BN1d + ReLU (OpenPCDet's ``post_act_block``)."""
    if conv_type == "subm":
        conv = spconv.SubMConv3d(cin, cout, kernel, bias=False, indice_key=indice_key)
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False,
                                   indice_key=indice_key)
    else:
        raise ValueError(f"unknown conv_type {conv_type!r}")
    return spconv.SparseSequential(conv, _bn(cout), nn.ReLU())


class SparseBasicBlock(spconv.SparseModule):
    """Two 3x3x3 SubMConv3d with BN1d, ReLU after the first and after the residual add."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, indice_key: str | None = None) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(inplanes, planes, 3, stride=1, padding=1, bias=True, indice_key=indice_key)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = spconv.SubMConv3d(planes, planes, 3, stride=1, padding=1, bias=True, indice_key=indice_key)
        self.bn2 = _bn(planes)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features))
        return out.replace_feature(self.relu(out.features + x.features))


class VoxelResBackBone8xVoxelNeXt(nn.Module):
    """VoxelNeXt's sparse backbone: six stages, sparse BEV output at stride 8."""

    def __init__(self, input_channels: int = 4, grid_size: Sequence[int] = GRID_SIZE,
                 channels: Sequence[int] = CHANNELS, out_channel: int = OUT_CHANNEL, blocks: int = 2) -> None:
        super().__init__()
        if channels[3] != channels[4]:
            raise ValueError("conv4, conv5 and conv6 features are concatenated: channels[3] must equal channels[4]")
        c = list(channels)
        self.sparse_shape = [int(grid_size[2]) + 1, int(grid_size[1]), int(grid_size[0])]  # z, y, x
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, c[0], 3, padding=1, bias=False, indice_key="subm1"), _bn(c[0]), nn.ReLU())
        self.conv1 = spconv.SparseSequential(*[SparseBasicBlock(c[0], c[0], indice_key="res1") for _ in range(blocks)])
        stages = [(c[0], c[1]), (c[1], c[2]), (c[2], c[3]), (c[3], c[4]), (c[4], c[4])]
        for i, (cin, cout) in enumerate(stages, start=2):
            down = conv_block(cin, cout, 3, f"spconv{i}", stride=2, padding=1, conv_type="spconv")
            res = [SparseBasicBlock(cout, cout, indice_key=f"res{i}") for _ in range(blocks)]
            self.add_module(f"conv{i}", spconv.SparseSequential(down, *res))
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv2d(c[3], out_channel, 3, stride=1, padding=1, bias=False, indice_key="spconv_down2"),
            _bn(out_channel), nn.ReLU())
        self.shared_conv = spconv.SparseSequential(
            spconv.SubMConv2d(out_channel, out_channel, 3, stride=1, padding=1, bias=True),
            nn.BatchNorm1d(out_channel), nn.ReLU(True))
        self.num_point_features = out_channel

    @staticmethod
    def bev_out(x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        """Sums the features of every (batch, y, x) column over z: a 2D sparse tensor."""
        indices, inverse = torch.unique(x.indices[:, [0, 2, 3]], dim=0, return_inverse=True)
        features = x.features.new_zeros((len(indices), x.features.shape[1])).index_add_(0, inverse, x.features)
        return spconv.SparseConvTensor(features, indices.int(), list(x.spatial_shape[1:]), x.batch_size)

    def forward(self, batch: dict[str, Any]) -> spconv.SparseConvTensor:
        x = spconv.SparseConvTensor(batch["voxel_features"], batch["voxel_coords"].int(), self.sparse_shape,
                                    batch["batch_size"])
        x = self.conv1(self.conv_input(x))
        x_conv4 = self.conv4(self.conv3(self.conv2(x)))
        x_conv5 = self.conv5(x_conv4)
        x_conv6 = self.conv6(x_conv5)
        # As VoxelNeXt: conv5 / conv6 sites join the conv4 grid, rescaled in place.
        x_conv5.indices[:, 1:] *= 2
        x_conv6.indices[:, 1:] *= 4
        merged = x_conv4.replace_feature(torch.cat([x_conv4.features, x_conv5.features, x_conv6.features]))
        merged.indices = torch.cat([x_conv4.indices, x_conv5.indices, x_conv6.indices])
        return self.shared_conv(self.conv_out(self.bev_out(merged)))


class SeparateHead(nn.Module):
    """One branch per output: (num_conv - 1) x [SubMConv2d + BN1d + ReLU], then a 1x1 SubMConv2d."""

    def __init__(self, input_channels: int, sep_head_dict: dict[str, dict[str, int]], kernel_size: int = 1,
                 init_bias: float = -2.19) -> None:
        super().__init__()
        self.sep_head_dict = sep_head_dict
        for name, spec in sep_head_dict.items():
            layers: list[nn.Module] = [
                spconv.SparseSequential(
                    spconv.SubMConv2d(input_channels, input_channels, kernel_size, padding=kernel_size // 2,
                                      bias=False, indice_key=name),
                    nn.BatchNorm1d(input_channels), nn.ReLU())
                for _ in range(spec["num_conv"] - 1)
            ]
            layers.append(spconv.SubMConv2d(input_channels, spec["out_channels"], 1, bias=True, indice_key=name + "out"))
            branch = nn.Sequential(*layers)
            with torch.no_grad():
                if name == "hm":
                    branch[-1].bias.fill_(init_bias)
                else:
                    branch[-1].weight.mul_(0.1)
                    branch[-1].bias.zero_()
            self.add_module(name, branch)

    def forward(self, x: spconv.SparseConvTensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(x).features for name in self.sep_head_dict}


class VoxelNeXtHead(nn.Module):
    """One SeparateHead per class group (``heads_list``), all on the shared sparse BEV features."""

    def __init__(self, input_channels: int = OUT_CHANNEL,
                 class_names_each_head: Sequence[Sequence[str]] = CLASS_NAMES_EACH_HEAD,
                 num_hm_conv: int = 2, kernel_size: int = 1) -> None:
        super().__init__()
        self.class_names_each_head = [list(names) for names in class_names_each_head]
        self.heads_list = nn.ModuleList()
        for names in self.class_names_each_head:
            spec = {k: {"out_channels": c, "num_conv": 2} for k, c in HEAD_DICT.items()}
            spec["hm"] = {"out_channels": len(names), "num_conv": num_hm_conv}
            self.heads_list.append(SeparateHead(input_channels, spec, kernel_size))

    def forward(self, x: spconv.SparseConvTensor) -> list[dict[str, Tensor]]:
        return [head(x) for head in self.heads_list]


class VoxelNeXtToy(nn.Module):
    """MeanVFE (done in the data) -> ``backbone_3d`` -> ``dense_head``, as OpenPCDet names them."""

    def __init__(self, channels: Sequence[int] = CHANNELS, out_channel: int = OUT_CHANNEL, blocks: int = 2,
                 input_channels: int = 4) -> None:
        super().__init__()
        self.class_names = list(CLASS_NAMES)
        self.backbone_3d = VoxelResBackBone8xVoxelNeXt(input_channels, GRID_SIZE, channels, out_channel, blocks)
        self.dense_head = VoxelNeXtHead(out_channel)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = self.backbone_3d(batch)
        return {"pred_dicts": self.dense_head(x), "voxel_indices": x.indices, "batch_size": x.batch_size}


def head_outputs(model: nn.Module, batch: dict[str, Any]) -> list[Tensor]:
    """Every head branch's output features, in a fixed order: the RD distortion target."""
    return [t for pred in model(batch)["pred_dicts"] for t in pred.values()]


def run_model(model: nn.Module, batch: dict[str, Any]) -> Any:
    """``run(model, batch)`` for calibration and reconstruction."""
    return model(batch)


def build_toy(seed: int = 0, narrow: bool = False, blocks: int = 2) -> VoxelNeXtToy:
    """A freshly initialized toy detector (eval mode)."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(NARROW) if narrow else {}
    return VoxelNeXtToy(blocks=blocks, **kwargs).eval()


@torch.no_grad()
def set_bn_statistics(model: nn.Module, batches: Sequence[dict[str, Any]]) -> nn.Module:
    """Running BN statistics as the cumulative average over ``batches`` (so BN folding is not the
    identity on a freshly initialized model); returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for batch in batches:
        model(batch)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()


def site_centers(voxel_indices: Tensor) -> Tensor:
    """BEV (x, y) in meters of sparse BEV sites ``(b, y, x)`` (VoxelNeXt: index * stride * voxel + min)."""
    cell = FEATURE_STRIDE * VOXEL_SIZE[0]
    idx = voxel_indices.long()
    return torch.stack([idx[:, 2] * cell + POINT_CLOUD_RANGE[0], idx[:, 1] * cell + POINT_CLOUD_RANGE[1]], dim=1).float()


def head_class_ids() -> list[list[int]]:
    """Per head of ``dense_head``: the 0-based ids of its classes."""
    return [[CLASS_NAMES.index(n) for n in names] for names in CLASS_NAMES_EACH_HEAD]
