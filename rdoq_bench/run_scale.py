"""Scale benchmark: the shipped COCO configs, full width, at 1333x800, with random weights.

Per model (Faster R-CNN R50-FPN and RetinaNet R101-FPN, from ``configs/mmdet/qdrop/``):

1. peak and final resident memory of calibration (``QuantCalibHook`` alone) at 2, 4, 8 and 16
   images, each in its own process, and the slope in MB per image;
2. per reconstruction-unit kind (ResNet block, ConvModule, plain conv, RoI FC): the bytes its cache
   holds per image, and on this CPU the seconds of a capture pass and of an optimisation step;
3. the projected cost of the default run (256 images, 20 000 iterations per unit, the default
   ``QDropReconHook``) on an assumed GPU: cache tiers, disk, bytes loaded, hours of loading and of
   compute. Compute comes from the FLOPs of each unit (counted by ``torch.utils.flop_counter``) at
   an assumed sustained rate; loading from the cache plan at assumed disk and host-to-device rates.

Writes ``bench/scale.json`` (a list of rows, one per model). Resumes: finished measurements are kept
in ``work_dirs/bench_scale/state.json``.

    OMP_NUM_THREADS=1 python -m rdoq_bench.run_scale [--models faster_rcnn_r50 retinanet_r101]
        [--images 2 4 8 16]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "faster_rcnn_r50": "configs/mmdet/qdrop/faster_rcnn_r50_fpn_2x_coco_w4a4.py",
    "retinanet_r101": "configs/mmdet/qdrop/retinanet_r101_fpn_2x_coco_w4a4.py",
}
# What the projection assumes (no GPU was measured here): one 80 GB GPU per process.
GPU = {"name": "A100-80GB", "memory_gb": 80.0, "sustained_tflops": 50.0, "disk_gb_per_s": 1.5,
       "host_to_device_gb_per_s": 20.0}
RUN = {"images": 256, "iters": 20000, "batch_size": 2, "cache_dtype_bytes": 2, "host_cache_gb": 4.0, "disk_passes": 2}
GIB = float(1 << 30)


def _state(work: Path) -> dict[str, Any]:
    path = work / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(work: Path, state: dict[str, Any]) -> None:
    tmp = work / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(work / "state.json")


def make_inputs(work: Path, model: str, images: int) -> tuple[Path, Path, dict[str, Any]]:
    """The generated images, a random-weight checkpoint of ``model``, and the ``--cfg-options``."""
    from mmcv import Config
    from mmdet.datasets import CocoDataset

    from mmdet_ext.prepare import build_structure
    from rdoq_bench.coco_scale import data_options, generate_coco_scale

    data = work / "coco_scale"
    if not (data / "annotations" / "instances_train.json").is_file() or \
            len(list((data / "train").glob("*.jpg"))) < images:
        generate_coco_scale(data, CocoDataset.CLASSES, num_images=images)
    config = REPO / MODELS[model]
    ckpt = work / f"{model}_random.pth"
    if not ckpt.is_file():
        torch.manual_seed(0)
        net = build_structure(Config.fromfile(str(config)))
        net.init_weights()
        torch.save({"state_dict": net.state_dict(), "meta": {"CLASSES": list(CocoDataset.CLASSES)}}, ckpt)
    return config, ckpt, data_options(data)


def calib_child(model: str, work: Path, images: int) -> dict[str, float]:
    """Calibration alone at ``images`` images (run in a child process): time and memory."""
    import mmdet_ext  # noqa: F401
    from mmdet_ext.prepare import prepare
    from mmdet_ext.quantize import quantize
    from rdoq_plugins.footprint import peak_rss_mb

    config, ckpt, options = make_inputs(work, model, images)
    start = time.time()
    prep = prepare(config, ckpt, work / "runs" / f"{model}_{images}", None,
                   {**options, "quant.calibrate": images}, need_calib=True)
    ctx = quantize(prep, hooks=[{"type": "QuantCalibHook"}]).session
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"images": images, "peak_rss_mb": round(peak_rss_mb(), 1), "final_rss_mb": round(rss_now, 1),
            "calib_s": round(ctx.result.timings["calibrate"], 1), "total_s": round(time.time() - start, 1)}


def _slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line ``y = a + b x``: ``(a, b)``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def unit_kind(name: str, module: torch.nn.Module) -> str:
    from mmcv.cnn import ConvModule
    from mmdet.models.backbones.resnet import Bottleneck

    if isinstance(module, Bottleneck):
        return "resnet_block"
    if isinstance(module, ConvModule):
        return "conv_module"
    return "fc" if isinstance(module, torch.nn.Linear) or "fc" in name.split(".")[-1] else "conv"


def unit_flops(model: torch.nn.Module, names: list[str], batch: Any, run: Any) -> tuple[dict[str, int], int]:
    """Forward FLOPs of each unit over its calls in ``run(model, batch)``, and of the whole pass,
    counted by ``FlopCounterMode`` (differences of its running total around each call)."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = dict.fromkeys(names, 0)
    starts: dict[str, int] = {}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        handles = []
        for name in names:
            unit = model.get_submodule(name)
            handles.append(unit.register_forward_pre_hook(
                lambda *_, n=name: starts.__setitem__(n, counter.get_total_flops())))
            handles.append(unit.register_forward_hook(
                lambda *_, n=name: flops.__setitem__(n, flops[n] + counter.get_total_flops() - starts[n])))
        try:
            run(model, batch)
        finally:
            for h in handles:
                h.remove()
        total = counter.get_total_flops()
    return flops, total


def measure_units(model: str, work: Path) -> dict[str, Any]:
    """Survey, FLOPs and per-kind capture / step times on one 2-image batch, on this CPU."""
    import mmdet_ext  # noqa: F401
    from mmdet_ext.detector import detector_units
    from mmdet_ext.prepare import prepare
    from mmdet_ext.quantize import quantize
    from rdoq_plugins.config import ReconConfig
    from rdoq_plugins.recon import ChunkCache, QDropReconstructor, cache_unit, survey_units

    config, ckpt, options = make_inputs(work, model, 2)
    prep = prepare(config, ckpt, work / "runs" / f"{model}_units", None, {**options, "quant.calibrate": 2})
    ctx = quantize(prep, hooks=[{"type": "QuantCalibHook"}]).session
    batch, images = ctx.batches[0], ctx.adapter.images(ctx.batches[0])
    names = detector_units(ctx.model)
    survey = survey_units(ctx.fp_model, names, batch, ctx.adapter.run)
    flops, total_flops = unit_flops(ctx.fp_model, names, batch, ctx.adapter.run)
    units = []
    for s in survey:
        module = ctx.model.get_submodule(s.name)
        units.append({"name": s.name, "kind": unit_kind(s.name, module), "calls": s.calls,
                      "bytes_per_image_fp16": (2 * s.input_elements + s.output_elements) * 2 // images,
                      "forward_flops_per_image": flops[s.name] // images})
    kinds: dict[str, Any] = {}
    for kind in sorted({u["kind"] for u in units}):
        biggest = max((u for u in units if u["kind"] == kind), key=lambda u: u["bytes_per_image_fp16"])
        name = biggest["name"]
        with ChunkCache(store_dtype=torch.float16) as cache:
            start = time.perf_counter()
            cache_unit(ctx.model, ctx.fp_model, name, [batch], ctx.adapter.run, cache, num_calls=biggest["calls"])
            capture = time.perf_counter() - start
            recon = QDropReconstructor(ReconConfig(iters=3, batch_size=2))
            start = time.perf_counter()
            with torch.enable_grad():
                recon(ctx.model.get_submodule(name), cache)
            step = (time.perf_counter() - start) / 3
        kinds[kind] = {"unit": name, "bytes_per_image_fp16": biggest["bytes_per_image_fp16"],
                       "cpu_capture_s_per_image": round(capture / images, 3), "cpu_step_s": round(step, 3),
                       "forward_gflops_per_image": round(biggest["forward_flops_per_image"] / 1e9, 2)}
    return {"units": units, "kinds": kinds, "model_forward_gflops_per_image": round(total_flops / images / 1e9, 1)}


def project(units: list[dict[str, Any]], gpu: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The default run's cost on an empty ``gpu``: cache tiers per unit (the hook's rule), disk,
    bytes loaded (disk windows and host-to-device), and hours."""
    from rdoq_plugins.recon import gpu_cache_bytes, split_tiers

    device_b, host_b = gpu_cache_bytes(gpu["memory_gb"] * GIB, gpu["memory_gb"] * GIB), run["host_cache_gb"] * GIB
    rate = gpu["sustained_tflops"] * 1e12
    compute_s = disk_read = h2d = disk_max = 0.0
    prefix = 0.0  # forward FLOPs per image up to and including this unit
    for u in units:
        prefix += u["forward_flops_per_image"]
        per_image = u["bytes_per_image_fp16"] * run["cache_dtype_bytes"] / 2
        total = per_image * run["images"]
        device, host, disk = split_tiers(total, device_b, host_b)
        disk_max = max(disk_max, disk)
        disk_read += disk * run["disk_passes"]
        h2d += run["iters"] * run["batch_size"] * per_image * (total - device) / max(total, 1.0)
        step = 3 * u["forward_flops_per_image"] * run["batch_size"]  # forward + backward
        compute_s += (run["iters"] * step + 2 * prefix * run["images"]) / rate  # + two capture passes
    load_s = disk_read / (gpu["disk_gb_per_s"] * GIB) + h2d / (gpu["host_to_device_gb_per_s"] * GIB)
    return {"gpu": gpu, "run": run, "disk_gb": round(disk_max / GIB, 2), "disk_read_gb": round(disk_read / GIB, 1),
            "host_to_device_gb": round(h2d / GIB, 1), "load_hours": round(load_s / 3600, 3),
            "compute_hours": round(compute_s / 3600, 2), "load_over_compute": round(load_s / compute_s, 4)}


def bench_model(model: str, work: Path, image_counts: list[int], state: dict[str, Any]) -> dict[str, Any]:
    mine = state.setdefault(model, {"calib": {}})
    for n in image_counts:
        if str(n) in mine["calib"]:
            continue
        make_inputs(work, model, max(image_counts))
        child = [sys.executable, "-m", "rdoq_bench.run_scale", "--calib-child", model, str(n), "--work", str(work)]
        out = subprocess.run(child, check=True, capture_output=True, text=True, cwd=REPO)
        mine["calib"][str(n)] = json.loads(out.stdout.strip().splitlines()[-1])
        print(model, mine["calib"][str(n)], flush=True)
        _save(work, state)
    if "units" not in mine:
        mine["units"] = measure_units(model, work)
        _save(work, state)
    calib = [mine["calib"][str(n)] for n in image_counts]
    xs = [float(c["images"]) for c in calib]
    peak0, peak_slope = _slope(xs, [c["peak_rss_mb"] for c in calib])
    _, final_slope = _slope(xs, [c["final_rss_mb"] for c in calib])
    largest = max(mine["units"]["units"], key=lambda u: u["bytes_per_image_fp16"])
    default = project(mine["units"]["units"], GPU, RUN)
    small_gpu = project(mine["units"]["units"], {**GPU, "name": "24 GB GPU", "memory_gb": 24.0}, RUN)
    return {
        "model": model,
        "config": MODELS[model],
        "image_size": [1333, 800],
        "calibration": calib,
        "calib_rss_slope_mb_per_image": round(peak_slope, 2),
        "calib_final_rss_slope_mb_per_image": round(final_slope, 2),
        "projected_peak_rss_mb_256": round(peak0 + peak_slope * 256, 0),
        "unit_kinds": mine["units"]["kinds"],
        "model_forward_gflops_per_image": mine["units"]["model_forward_gflops_per_image"],
        "largest_unit": largest["name"],
        "largest_unit_cache_gb_256": round(largest["bytes_per_image_fp16"] * 256 / GIB, 2),
        "assumed_gpu": GPU["name"],
        "projected_disk_gb_256": default["disk_gb"],
        "projected_load_hours_256": default["load_hours"],
        "projected_compute_hours_256": default["compute_hours"],
        "projection": default,
        "projection_24gb_gpu": small_gpu,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--work", type=Path, default=REPO / "work_dirs" / "bench_scale")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scale.json")
    parser.add_argument("--calib-child", nargs=2, metavar=("MODEL", "IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.calib_child:
        print(json.dumps(calib_child(args.calib_child[0], args.work, int(args.calib_child[1]))))
        return
    state = _state(args.work)
    rows = [bench_model(m, args.work, args.images, state) for m in args.models]
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps([{k: v for k, v in r.items() if k.startswith(("model", "calib_rss", "projected"))} for r in rows],
                     indent=2))


if __name__ == "__main__":
    main()
