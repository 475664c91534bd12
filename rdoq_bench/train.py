"""Reproduces the bundled FP checkpoints of the embedded benchmark with mmdet's own training.

1. Generates the digits COCO set (``data/digits_coco``) if it is missing.
2. Runs mmdet 2.28's ``tools/train.py`` (shipped in the mmdet package) on CPU, resuming from the
   work dir's latest checkpoint if there is one (``--auto-resume``).
3. Exports the final weights to ``--out`` as a small checkpoint that loads with
   ``torch.load(..., weights_only=True)``: ``{'state_dict': ..., 'meta': {'CLASSES', 'epoch', 'config'}}``.

Usage::

    python -m rdoq_bench.train configs/bench/faster_rcnn_r50_narrow_digits.py \
        --work-dir ~/.cache/rdoq-plugins/train/faster_rcnn --out checkpoints/faster_rcnn_r50_narrow_digits.pth
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import torch

from rdoq_bench.digits_coco import generate_digits_coco


def train(config: Path, work_dir: Path) -> None:
    """mmdet's own training script, as if run from the command line."""
    from mmdet_ext.mmdet_configs import mmdet_config_root

    script = mmdet_config_root().parent / "tools" / "train.py"
    argv = [str(script), str(config), "--work-dir", str(work_dir), "--auto-resume", "--seed", "0", "--deterministic"]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old


def export(work_dir: Path, out: Path) -> None:
    """Writes the latest checkpoint's weights and class names, loadable with weights_only=True."""
    ckpt = torch.load(work_dir / "latest.pth", map_location="cpu", weights_only=False)
    meta = ckpt.get("meta", {})
    slim = {
        "state_dict": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()},
        "meta": {"CLASSES": list(meta.get("CLASSES", ())), "epoch": int(meta.get("epoch", 0)),
                 "config": str(meta.get("config", ""))},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(slim, tmp)
    torch.load(tmp, weights_only=True)  # fail here, not in a user's hands
    tmp.replace(out)
    print(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB, epoch {slim['meta']['epoch']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the exported checkpoint")
    parser.add_argument("--data-root", type=Path, default=Path("data/digits_coco"))
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args()
    if not args.export_only:
        generate_digits_coco(args.data_root, progress=True)
        train(args.config, args.work_dir.expanduser())
    export(args.work_dir.expanduser(), args.out)


if __name__ == "__main__":
    main()
