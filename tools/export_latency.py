"""onnxruntime CPU latency and kernels of a quantized mmdet detector's ``model.onnx`` network, beside
the same network at FP32 and at W8A8 (every unit of the same quantizers at 8 bits; for speed only).

    python tools/export_latency.py CONFIG QUANTIZED_CKPT [--runs 15] [--threads 1]

Prints JSON: per variant, the median latency (ms) on the first test image and what onnxruntime runs
(integer kernels, float convolutions, DequantizeLinear / QuantizeLinear counts); see docs/export.md.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from mmdet_ext.export import export_detector
from mmdet_ext.prepare import prepare
from rdoq_plugins.export.ort_kernels import kernel_summary, latency_ms
from rdoq_plugins.modules.switch import quantizers, set_quant_state
from tools.export import _batches


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    prep = prepare(args.config, args.checkpoint, Path("work_dirs") / "export_latency", None, need_calib=False)
    det = prep.model.cpu().eval()
    img, metas = _batches(prep.test_loader, 1)[0]
    w8, fp = copy.deepcopy(det), copy.deepcopy(det)
    for q in quantizers(w8):
        q.set_bits(8)
    set_quant_state(fp, weight=False, act=False)
    rows: dict[str, Any] = {"image": list(img.shape)}
    for name, model in (("fp32", fp), ("w8a8", w8), ("quantized", det)):
        onnx_bytes = export_detector(model, img, metas)[0].exported.model.SerializeToString()
        rows[name] = {"latency_ms": latency_ms(onnx_bytes, {"img": img.numpy()}, args.runs, args.threads),
                      **kernel_summary(onnx_bytes)}
    print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
