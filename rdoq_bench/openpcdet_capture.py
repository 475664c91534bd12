"""Reconstruction on the full stock VoxelNeXt on CPU (issue 16, item 5): capture passes unit by
unit against the head branches captured together, and the time of a reconstruction step.

    python -m rdoq_bench.openpcdet_capture ROOT --frames 1 --iters 3 --out FILE.json

On the setup of :mod:`rdoq_bench.openpcdet_cost` (run under ``/usr/bin/time -v`` for the peak
memory): the tool's own preparation and plan (``qdrop.yaml``, ``FRAMES`` calibration frames),
calibration, then

* one FP and one quantized forward pass per frame, timed;
* the first and last head branch captured alone (:func:`~rdoq_plugins.recon.cache_unit`, as
  before the groups), and every head branch captured together
  (:class:`~rdoq_plugins.recon.shared_capture.SharedCaptures`), timed, and checked equal;
* ``ITERS`` reconstruction steps of ``conv_input``, ``conv1.0`` and the first head branch, timed.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rdoq_bench.openpcdet_cost import CFG, in_tools

UNITS = ("backbone_3d.conv_input", "backbone_3d.conv1.0")


def _same(a: Any, b: Any) -> bool:
    """Exactly equal tensors, containers element by element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def measure(root: Path, frames: int, iters: int) -> dict[str, Any]:
    from dataclasses import replace

    from pcdet_ext.prepare import prepare
    from pcdet_ext.quantize import plan_quantization
    from rdoq_plugins.recon import ChunkCache, QDropReconstructor, cache_unit
    from rdoq_plugins.recon.shared_capture import SharedCaptures, input_groups
    from rdoq_plugins.recon.unit_loop import add_held
    from rdoq_plugins.workflow import Step, run_step
    from tools.pcdet import recon as recon_tool

    argv = ["--cfg_file", CFG, "--ckpt", str(root / "random.pth"), "--quant_cfg", str(root / "qdrop.yaml"),
            "--work_dir", str(root / f"capture{frames}"), "--batch_size", "1", "--workers", "0",
            "--set", "DATA_CONFIG.DATA_PATH", str(root / "nuscenes"), "QUANT.calibrate", str(frames)]
    out: dict[str, Any] = {"frames": frames, "iters": iters}
    with in_tools():
        prep = prepare(recon_tool.parse_args(argv), need_test=False, need_eval=False)
        start = time.time()
        session = plan_quantization(prep).session
        out["plan_s"] = round(time.time() - start, 1)
        out["recon_cache"] = {k: v for k, v in session.result.recon_cost.items() if k != "units"}
        run_step(session, Step.CALIBRATE)
    model, fp, run, io, batches = session.model, session.fp_model, session.adapter.run, \
        session.adapter.unit_io, session.batches
    out["voxels"] = [int(b["voxels"].shape[0]) for b in batches]
    with torch.no_grad():
        for label, net in (("fp", fp), ("quant", model)):
            start = time.time()
            for b in batches:
                run(net, b)
            out[f"{label}_forward_s_per_frame"] = round((time.time() - start) / frames, 2)
    order = [s.name for s in session.survey]
    [group] = input_groups(session.survey, order)
    out["head_branches"] = len(group)
    alone: dict[str, ChunkCache] = {}
    for name in (group[0], group[-1]):
        start = time.time()
        alone[name] = cache_unit(model, fp, name, batches, run, ChunkCache(), io, num_calls=1)
        out[f"alone_capture_s[{name}]"] = round(time.time() - start, 2)
    shared = SharedCaptures(io, 8 << 30)
    start = time.time()
    assert shared.capture(model, fp, group, batches, run)
    out["group_capture_s"] = round(time.time() - start, 2)
    mean_alone = sum(out[f"alone_capture_s[{n}]"] for n in (group[0], group[-1])) / 2
    out["head_capture_s_before"] = round(mean_alone * len(group), 1)  # every branch alone, projected
    out["head_capture_s_after"] = out["group_capture_s"]
    for name in (group[0], group[-1]):
        with ChunkCache() as held:
            add_held(model, name, shared.take(name), held, io)
            assert all(_same(alone[name].chunk_with_context(i), held.chunk_with_context(i))
                       for i in range(held.num_chunks)), name
        alone[name].close()
    out["group_equals_alone"] = True
    del shared
    assert session.qcfg.recon is not None
    recon = QDropReconstructor(replace(session.qcfg.recon, iters=iters), session.seed)
    for name in (*UNITS, group[0]):
        with ChunkCache() as cache:
            start = time.time()
            cache_unit(model, fp, name, batches, run, cache, io, num_calls=1)
            capture = time.time() - start
            start = time.time()
            with torch.enable_grad():
                recon(model.get_submodule(name), cache, None, io=io)
            out[f"unit[{name}]"] = {"capture_s": round(capture, 2), "step_s": round((time.time() - start) / iters, 2),
                                    "cache_mb": round(sum(cache.stats()[k] for k in ("bytes_device", "bytes_host"))
                                                      / 2**20, 1)}
    out["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from pcdet_ext.cli import show_log

    show_log(0)  # the reconstruction's cost line, as the tools print it
    torch.set_num_threads(1)
    result = measure(args.root.resolve(), args.frames, args.iters)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
