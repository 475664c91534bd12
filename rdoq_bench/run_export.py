"""The export benchmark (issue 17, item 5): bench detectors' quantized checkpoints exported with
``tools/export.py`` and checked, one row per exported model, in ``bench/export.json``.

Each row is a work dir of the mmdet bench under ``--root`` (default ``work_dirs/repro``) holding a
``quantized.pth`` and its ``report.json`` (which names the config). Nothing is re-quantized. Per row:

1. ``tools/export.py CONFIG quantized.pth --out work_dirs/export/<row> --check --eval``: the ONNX
   networks, ``weights.packed``, the per-layer parity on ``--images`` val images and box AP on the
   whole val set, fake-quantized PyTorch vs onnxruntime;
2. onnxruntime CPU latency (``--threads`` threads, median of ``--runs`` runs after a warm-up) of
   each exported network on the first val image: ``model.onnx`` on the image, ``roi_head.onnx``
   (two-stage) on that image's RoI features; ``latency_ms`` is their sum. ``latency_ms_fp32`` is the
   same networks exported with every quantizer off.

Row keys: ``row, model, method, bits, config, checkpoint, ap_report`` (the quantized AP
``report.json`` recorded), ``ap_fakequant, ap_onnxruntime, max_rel_diff`` (worst quantized layer
alone, the parity tolerance's measure), ``max_rel_diff_layer, max_rel_diff_propagated`` (the whole
network's value at the worst layer), ``max_rel_diff_deployed`` (the written graphs' outputs as
onnxruntime runs them), ``first_over``, ``size_bytes_packed, size_bytes_predicted``
(``size_bytes.quant`` of :func:`rdoq_plugins.footprint.size_bytes` on the loaded model),
``size_bytes_fp32, latency_ms, latency_ms_fp32, latency_graphs, kernels`` (what onnxruntime runs, per graph), ``threads, runs, images, time_s``.

Rows are written after each one; a rerun skips a row whose checkpoint is unchanged (``--force``
redoes it). About 4-6 minutes per row on one thread.

    OMP_NUM_THREADS=1 python -m rdoq_bench.run_export [--rows faster_rcnn_rdoq_w4a4_c64_scores ...]
    OMP_NUM_THREADS=1 python -m rdoq_bench.run_export --work-dir DIR --name faster_rcnn_qdrop_w4a4_x
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = (
    "faster_rcnn_minmax_w4a4_c64",
    "faster_rcnn_rdoq_w4a4_c64_scores",
    "faster_rcnn_rdoq-both_w4a4_c64_scores",
    "retinanet_qdrop_w4a4_c64_i500",
    "retinanet_rdoq_w4a4_c64_scores",
    "retinanet_rdoq-both_w4a4_c64_scores",
    "faster_rcnn_rdoq_w3a4_c64_scores",
    "faster_rcnn_rdoq-both_w3a4_c64_scores",
    "retinanet_rdoq_w3a4_c64_scores",
    "retinanet_rdoq-both_w3a4_c64_scores",
)
METHODS = ("rdoq-both", "rdoq", "qdrop", "minmax")


def row_names(row: str) -> tuple[str, str, str]:
    """``(model, method, bits)`` from a work dir name such as ``faster_rcnn_rdoq-both_w4a4_c64_scores``."""
    for method in METHODS:
        head, sep, tail = row.partition(f"_{method}_")
        if sep:
            return head, method, tail.split("_")[0].upper()
    raise ValueError(f"{row}: no method among {METHODS} in the name")


def checkpoint_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def latencies(config: Path, checkpoint: Path, out: Path, runs: int, threads: int) -> dict[str, Any]:
    """Median onnxruntime latency of each exported graph (as written in ``out``) and of the same
    graphs at FP32, on the first val image; with the integer / float kernel counts."""
    from mmdet_ext.export import export_detector, graph_inputs
    from mmdet_ext.prepare import prepare
    from rdoq_plugins.export.ort_kernels import kernel_summary, latency_ms
    from rdoq_plugins.modules.switch import set_quant_state
    from tools.export import _batches

    prep = prepare(config, checkpoint, out, None, need_calib=False)
    det = prep.model.cpu().eval()
    batch = _batches(prep.test_loader, 1)
    fp = copy.deepcopy(det)
    set_quant_state(fp, weight=False, act=False)
    result: dict[str, Any] = {"quantized": {}, "fp32": {}, "kernels": {}}
    for graph in export_detector(det, *batch[0]):
        feeds = {graph.input_name: graph_inputs(det, graph, batch)[0][0].numpy()}
        onnx_bytes = (out / f"{graph.name}.onnx").read_bytes()
        result["quantized"][graph.name] = latency_ms(onnx_bytes, feeds, runs, threads)
        result["kernels"][graph.name] = kernel_summary(onnx_bytes)
    for graph in export_detector(fp, *batch[0]):
        feeds = {graph.input_name: graph_inputs(fp, graph, batch)[0][0].numpy()}
        result["fp32"][graph.name] = latency_ms(graph.exported.model.SerializeToString(), feeds, runs, threads)
    result["image"] = list(batch[0][0].shape)
    return result


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def run_row(row: str, work: Path, out_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Exports, checks, evaluates and times the quantized checkpoint of ``work`` as row ``row``."""
    from tools import export as export_tool

    start = time.time()
    report = json.loads((work / "report.json").read_text())
    config, checkpoint = REPO / report["model"], work / "quantized.pth"
    out = out_root / row
    ns = argparse.Namespace(config=config, checkpoint=checkpoint, out=out, check=True, images=args.images,
                            tol=args.tol, eval=True, debug=False)
    exported = export_tool.run(ns)
    timing = latencies(config, checkpoint, out, args.runs, args.threads)
    model, method, bits = row_names(row)
    check = exported["check"]
    sizes = exported["size_bytes"]
    return {
        "row": row, "model": model, "method": method, "bits": bits,
        "config": _shown(config), "checkpoint": _shown(checkpoint),
        "checkpoint_stamp": checkpoint_stamp(checkpoint),
        "ap_report": report.get("quant", {}).get("bbox_mAP"),
        "ap_fakequant": exported["ap"]["fakequant"], "ap_onnxruntime": exported["ap"]["onnxruntime"],
        "max_rel_diff": check["worst"]["max_rel_diff"], "max_rel_diff_layer": check["worst"]["layer"],
        "max_rel_diff_propagated": check["worst_propagated"]["max_rel_diff"],
        "max_rel_diff_propagated_layer": check["worst_propagated"]["layer"],
        "max_rel_diff_deployed": max(check["deployed"].values()),
        "first_over": check["first_over"], "tol": check["tol"],
        "size_bytes_packed": sizes["packed"], "size_bytes_predicted": sizes["predicted"],
        "size_bytes_header": sizes["header"], "size_bytes_fp32": sizes["fp32"],
        "latency_ms": sum(timing["quantized"].values()), "latency_ms_fp32": sum(timing["fp32"].values()),
        "latency_graphs": {"quantized": timing["quantized"], "fp32": timing["fp32"]},
        "kernels": timing["kernels"], "latency_image": timing["image"],
        "threads": args.threads, "runs": args.runs, "images": args.images,
        "time_s": round(time.time() - start, 1),
    }


def _deployed(row: dict[str, Any]) -> str:
    value = row.get("max_rel_diff_deployed")
    return "n/a" if value is None else f"{value:.2g}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (``--table``)."""
    head = ("| model | method | AP fake-quant | AP onnxruntime | max rel. diff (layer alone) | propagated | "
            "outputs | bytes packed | predicted | FP32 | latency ms | FP32 ms |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} {r['bits']} | {r['ap_fakequant']:.4f} | {r['ap_onnxruntime']:.4f} | "
                     f"{r['max_rel_diff']:.1e} | {r['max_rel_diff_propagated']:.2g} | {_deployed(r)} | {r['size_bytes_packed']:,} | "
                     f"{r['size_bytes_predicted']:,} | {r['size_bytes_fp32']:,} | {r['latency_ms']:.1f} | "
                     f"{r['latency_ms_fp32']:.1f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help="work dir names under --root")
    ap.add_argument("--root", type=Path, default=REPO / "work_dirs" / "repro")
    ap.add_argument("--work-dir", type=Path, help="one work dir anywhere (not --root/--rows), exported as row --name")
    ap.add_argument("--name", help="the row name of --work-dir, <model>_<method>_<bits>_...")
    ap.add_argument("--out-root", type=Path, default=REPO / "work_dirs" / "export")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "export.json")
    ap.add_argument("--images", type=int, default=4, help="val images of the parity check")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--runs", type=int, default=15, help="timed runs per graph (median)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--force", action="store_true", help="redo rows already in --out")
    ap.add_argument("--table", action="store_true", help="print --out as a markdown table and stop")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.is_file() else []
    if args.table:
        print(table(rows))
        return rows
    works = {row: args.root / row for row in args.rows}
    if args.work_dir is not None:
        if not args.name:
            raise SystemExit("--work-dir needs --name")
        row_names(args.name)
        works = {args.name: args.work_dir}
    for row, work in works.items():
        ckpt = work / "quantized.pth"
        if not ckpt.is_file():
            print(f"skip {row}: no {ckpt}")
            continue
        done = next((r for r in rows if r["row"] == row), None)
        if done is not None and not args.force and done.get("checkpoint_stamp") == checkpoint_stamp(ckpt):
            print(f"keep {row}")
            continue
        result = run_row(row, work, args.out_root, args)
        rows = [r for r in rows if r["row"] != row] + [result]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps({k: result[k] for k in ("row", "ap_fakequant", "ap_onnxruntime", "max_rel_diff",
                                                  "size_bytes_packed", "latency_ms", "latency_ms_fp32",
                                                  "time_s")}))
    return rows


if __name__ == "__main__":
    main()
