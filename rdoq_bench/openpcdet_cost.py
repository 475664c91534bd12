"""What the full stock VoxelNeXt costs on CPU (issue 16, item 5): the inputs of the measurements.

    python -m rdoq_bench.openpcdet_cost setup ROOT     # data, random weights, quant configs in ROOT

``setup`` writes a nuScenes-format set of 2 train and 1 val keyframes (:mod:`rdoq_bench.nuscenes_format`
defaults: ~37k points a keyframe, 10 sweeps), the stock ``cbgs_voxel0075_voxelnext.yaml`` VoxelNeXt
with random weights (``ROOT/random.pth``) and two quant configs: ``rdoq.yaml`` (second-order curves)
and ``qdrop.yaml`` (W4A8 QDrop). The tools then run on them under ``/usr/bin/time -v`` for their
peak memory, and :mod:`rdoq_bench.openpcdet_capture` times the capture passes and the steps.
Needs ``OPENPCDET_ROOT`` (a checkout; no build) on ``PYTHONPATH`` with its pure-Python deps.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

CFG = "cfgs/nuscenes_models/cbgs_voxel0075_voxelnext.yaml"
A8 = "{quantizer: LSQFakeQuantize, observer: AvgMSEFastObserver, bit: 8, symmetric: false, ch_axis: -1}"
FIRST_8BIT = "overrides:\n  backbone_3d.conv_input.0: {w_qconfig: {bit: 8}, a_qconfig: null}\n"
QUANT_CONFIGS = {
    "rdoq.yaml": (f"a_qconfig: {A8}\n"
                  "w_qconfig: {quantizer: FixedFakeQuantize, observer: MSEObserver, bit: 4, symmetric: false, "
                  "ch_axis: 0}\n"
                  "calibrate: 1\ncalib: {split: train, batch_size: 1, seed: 1005, augment: false}\nrecon: null\n"
                  "rdoq: {estimator: second_order, target: weight, target_rates: [4], apply_rate: 4, solver: dp, "
                  "weight_group: 8, calib_images: 1, projections: 1}\n" + FIRST_8BIT),
    "qdrop.yaml": (f"a_qconfig: {A8}\n"
                   "w_qconfig: {quantizer: AdaRoundFakeQuantize, observer: MSEObserver, bit: 4, symmetric: false, "
                   "ch_axis: 0}\n"
                   "calibrate: 1\ncalib: {split: train, batch_size: 1, seed: 1005, augment: false}\n"
                   "recon: {iters: 3, warm_up: 0.2, weight: 0.01, b_range: [20, 2], drop_prob: 0.5}\n" + FIRST_8BIT),
}


def tools_dir() -> Path:
    """OpenPCDet's ``tools/`` folder (its configs name their base configs relative to it)."""
    from pcdet_ext.openpcdet_import import import_pcdet

    return Path(import_pcdet(need_eval=False).pcdet.__file__).resolve().parents[1] / "tools"


@contextmanager
def in_tools() -> Iterator[Path]:
    """Runs the block in OpenPCDet's ``tools/`` folder."""
    cwd = os.getcwd()
    os.chdir(tools_dir())
    try:
        yield tools_dir()
    finally:
        os.chdir(cwd)


def setup(root: Path) -> None:
    """The data, the random checkpoint and the quant configs under ``root``."""
    from pcdet_ext.cpu_patches import apply_cpu_patches
    from pcdet_ext.openpcdet_import import import_pcdet
    from rdoq_bench.nuscenes_format import NuScenesSpec, write_nuscenes

    root.mkdir(parents=True, exist_ok=True)
    write_nuscenes(root / "nuscenes", NuScenesSpec(train_frames=2, val_frames=1, seed=0))
    pcdet = import_pcdet(need_eval=False)
    apply_cpu_patches()
    with in_tools():
        cfg = pcdet.config.cfg
        pcdet.config.cfg_from_yaml_file(CFG, cfg)
        pcdet.config.cfg_from_list(["DATA_CONFIG.DATA_PATH", str(root / "nuscenes")], cfg)
        logger = pcdet.common_utils.create_logger(None)
        test_set, _, _ = pcdet.build_dataloader(dataset_cfg=cfg.DATA_CONFIG, class_names=cfg.CLASS_NAMES,
                                                batch_size=1, dist=False, workers=0, logger=logger, training=False)
        torch.manual_seed(0)
        model = pcdet.build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=test_set)
        torch.save({"model_state": model.state_dict(), "epoch": 0}, root / "random.pth")
        points = [len(test_set[i]["points"]) for i in range(len(test_set))]
    for name, text in QUANT_CONFIGS.items():
        (root / name).write_text(text)
    print(f"wrote {root}: points per val sample (10 sweeps) {points}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["setup"])
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    setup(args.root.resolve())


if __name__ == "__main__":
    main()
