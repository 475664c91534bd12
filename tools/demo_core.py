"""Core demo: post-training quantization of a small built-in ResNet on scikit-learn's digits.

Trains a tiny residual CNN on the bundled 8x8 digits (seconds on CPU), folds BN, then quantizes it
with min-max PTQ, MSE observers and QDrop block reconstruction at W4A4 and W2A4, and prints one
table of top-1 accuracy and output error against the FP model. The first conv stays at 8 bits,
as in QDrop. Usage: ``python tools/demo_core.py [--iters 500] [--work-dir DIR]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from rdoq_plugins import QDropReconstructor, calibrate, fuse_conv_bn, load_quant_config, quantize_model
from rdoq_plugins.recon import reconstruct_units

UNITS = ["stem", "block1", "block2", "fc"]


class Block(nn.Module):
    """A ResNet basic block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class TinyResNet(nn.Module):
    """stem -> block1 -> block2 (stride 2) -> pool -> fc, for 1x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Block(16, 16, 1)
        self.block2 = Block(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


def load_digits_tensors() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's bundled digits as ``[N, 1, 8, 8]`` in [0, 1]; a fixed 1400 / 397 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 30) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, fp: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Top-1 accuracy and the output MSE against the FP model."""
    out = model(x)
    return (out.argmax(1) == y).float().mean().item(), F.mse_loss(out, fp(x)).item()


def run_setting(fp: nn.Module, setting: dict[str, Any], calib: list[Tensor], iters: int) -> nn.Module:
    cfg = load_quant_config({
        "w_qconfig": {"quantizer": setting["wq"], "observer": setting["obs"], "bit": setting["w"], "ch_axis": 0},
        "a_qconfig": {"quantizer": setting["aq"], "observer": "Avg" + setting["obs"].replace("MSE", "MSEFast"),
                      "bit": setting["a"]},
        "recon": {"iters": iters, "batch_size": 32} if setting["recon"] else None,
        "overrides": {"stem.0": {"w_qconfig": {"bit": 8}, "a_qconfig": {"bit": 8}}},
    })
    model = copy.deepcopy(fp)
    quantize_model(model, cfg)
    run: Callable[[nn.Module, Tensor], Tensor] = lambda m, b: m(b)
    calibrate(model, calib, run)
    if cfg.recon is not None:
        bar = lambda name: (lambda it: tqdm(it, desc=f"  {name}", leave=False, mininterval=1.0))
        reconstruct_units(model, fp, UNITS, calib, run, QDropReconstructor(cfg.recon), progress=bar)
    return model


SETTINGS = [
    {"name": "min-max PTQ", "wq": "FixedFakeQuantize", "aq": "FixedFakeQuantize", "obs": "MinMaxObserver", "recon": False},
    {"name": "MSE PTQ", "wq": "FixedFakeQuantize", "aq": "FixedFakeQuantize", "obs": "MSEObserver", "recon": False},
    {"name": "QDrop", "wq": "AdaRoundFakeQuantize", "aq": "LSQFakeQuantize", "obs": "MSEObserver", "recon": True},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=500, help="reconstruction iterations per unit")
    parser.add_argument("--work-dir", type=Path, default=None, help="write report.json here")
    args = parser.parse_args()
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    fp = TinyResNet()
    t0 = time.time()
    train(fp, x_tr, y_tr)
    fuse_conv_bn(fp)
    acc, _ = evaluate(fp, fp, x_te, y_te)
    rows = [{"method": "FP32", "w_bits": 32, "a_bits": 32, "top1": acc, "out_mse": 0.0, "time_s": time.time() - t0}]
    calib = list(x_tr[:256].split(32))
    for w, a in [(4, 4), (2, 4)]:
        for setting in SETTINGS:
            t0 = time.time()
            model = run_setting(fp, {**setting, "w": w, "a": a}, calib, args.iters)
            acc, mse = evaluate(model, fp, x_te, y_te)
            rows.append({"method": setting["name"], "w_bits": w, "a_bits": a, "top1": acc, "out_mse": mse,
                         "time_s": time.time() - t0})
    print(f"\nTinyResNet on scikit-learn digits ({len(x_te)} test images), first conv W8A8")
    print(f"{'method':<14}{'W/A':>7}{'top-1':>9}{'out MSE':>11}{'time s':>9}")
    for r in rows:
        print(f"{r['method']:<14}{r['w_bits']:>4}/{r['a_bits']:<2}{100 * r['top1']:>9.2f}{r['out_mse']:>11.4f}"
              f"{r['time_s']:>9.1f}")
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        (args.work_dir / "report.json").write_text(json.dumps({"model": "TinyResNet-digits", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
