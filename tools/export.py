"""Export a quantized mmdet detector for deployment (issue 17).

    python tools/export.py CONFIG QUANTIZED_CKPT --out DIR [--check] [--images 4] [--eval]

CONFIG is the mmdet config; QUANTIZED_CKPT the ``quantized.pth`` that ``tools/test.py`` /
``tools/recon.py`` write. DIR receives:

* ``model.onnx`` (and ``roi_head.onnx`` for a two-stage detector): the network up to the raw head
  outputs with QuantizeLinear / DequantizeLinear nodes carrying the model's integers (opset 21,
  ``onnx.checker`` with full checks);
* ``weights.packed``: every quantized weight bit-packed at its groups' bits, loaded back by
  :func:`rdoq_plugins.export.load_packed`;
* ``export.json``: per layer, bits, containers and node names; sizes; with ``--check``, each layer's
  largest output difference against the fake-quantized model on ``--images`` test images and the
  first layer over the tolerance, and each written graph's output difference as onnxruntime runs
  it; with ``--eval``, box AP with onnxruntime beside the fake-quant AP.

See docs/export.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmcv.parallel import DataContainer

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.cli import tool_main
from mmdet_ext.evaluate import evaluate
from mmdet_ext.export import export_detector, graph_inputs, onnxruntime_detector, session
from mmdet_ext.prepare import prepare
from rdoq_plugins.cli_flags import add_debug_arg
from rdoq_plugins.errors import InputError
from rdoq_plugins.export import write_packed
from rdoq_plugins.export.onnx_qdq import save
from rdoq_plugins.export.parity import TOLERANCE, run_parity
from rdoq_plugins.footprint import size_bytes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="mmdet config file")
    parser.add_argument("checkpoint", type=Path, help="quantized checkpoint (quantized.pth)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--check", action="store_true", help="layer-by-layer parity with onnxruntime")
    parser.add_argument("--images", type=int, default=4, help="test images for --check (default 4)")
    parser.add_argument("--tol", type=float, default=TOLERANCE, help="relative tolerance of --check")
    parser.add_argument("--eval", action="store_true", help="box AP with onnxruntime beside the fake-quant AP")
    add_debug_arg(parser)
    return parser.parse_args(argv)


def _batches(loader: Any, count: int) -> list[tuple[Any, list[dict[str, Any]]]]:
    out = []
    for data in loader:
        img, metas = data["img"][0], data["img_metas"][0]
        img = img.data[0] if isinstance(img, DataContainer) else img
        metas = metas.data[0] if isinstance(metas, DataContainer) else metas
        out.append((img, metas))
        if len(out) >= count:
            break
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    prep = prepare(args.config, args.checkpoint, args.out, None, need_calib=False)
    if not prep.quantized_checkpoint:
        raise InputError(f"{args.checkpoint} is not a quantized checkpoint: quantize first (tools/test.py)")
    det = prep.model.cpu().eval()
    batches = _batches(prep.test_loader, max(1, args.images))
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"config": str(args.config), "checkpoint": str(args.checkpoint), "graphs": {}}
    graphs = export_detector(det, *batches[0])
    for graph in graphs:
        save(graph.exported, args.out / f"{graph.name}.onnx")
        report["graphs"][graph.name] = {"file": f"{graph.name}.onnx", "layers": graph.exported.layers}
    packed = write_packed(det, args.out / "weights.packed", {"config": str(args.config)})
    report["size_bytes"] = {"packed": packed["bytes"], "header": packed["header_bytes"],
                            "predicted": size_bytes(det)["quant"], "fp32": size_bytes(det)["fp32"]}
    if args.check:
        report["check"] = check(det, batches, args.tol, {g.name: g.exported.model for g in graphs})
    if args.eval:
        sessions = {name: session((args.out / g["file"]).read_bytes()) for name, g in report["graphs"].items()}
        fake, _ = evaluate(prep, det, "fake-quant", ["bbox"])
        with onnxruntime_detector(det, sessions):
            ort_ap, _ = evaluate(prep, det, "onnxruntime", ["bbox"])
        report["ap"] = {"fakequant": fake.get("bbox_mAP"), "onnxruntime": ort_ap.get("bbox_mAP")}
    (args.out / "export.json").write_text(json.dumps(report, indent=1))
    return report


def check(det: Any, batches: list[Any], tol: float, deployed: dict[str, Any]) -> dict[str, Any]:
    """Parity of every quantized layer on ``batches`` (probed exports, not written) and of the outputs
    of the ``deployed`` graphs (name -> ModelProto, as written)."""
    out: dict[str, Any] = {"tol": tol, "images": len(batches), "layers": {}, "first_over": None, "deployed": {}}
    for graph in export_detector(det, *batches[0], probe=True):
        ex = graph.exported
        parity = run_parity(ex, graph.module, det, graph_inputs(det, graph, batches), [graph.input_name], tol,
                            deployed=deployed[graph.name])
        out["layers"].update(parity.per_layer())
        out.setdefault("layers_propagated", {}).update(parity.per_layer("propagated"))
        out[f"{graph.name}_max_abs_output_diff"] = parity.final_max_abs
        out["deployed"][graph.name] = parity.deployed
        out["first_over"] = out["first_over"] or parity.first_over
    worst = max(out["layers"], key=out["layers"].__getitem__)
    out["worst"] = {"layer": worst, "max_rel_diff": out["layers"][worst]}
    worst = max(out["layers_propagated"], key=out["layers_propagated"].__getitem__)
    out["worst_propagated"] = {"layer": worst, "max_rel_diff": out["layers_propagated"][worst]}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = tool_main(run, args)
    summary = {k: report.get(k) for k in ("size_bytes", "ap")}
    if "check" in report:
        summary["check"] = {k: report["check"][k] for k in ("worst", "first_over", "worst_propagated", "deployed")}
    print(json.dumps(summary, indent=1))
    return report


if __name__ == "__main__":
    main()
