"""Which part of a quantized detector costs what: box AP with one part's quantizers switched off.

    OMP_NUM_THREADS=1 python -m rdoq_bench.head_diagnosis CONFIG QUANTIZED_CKPT --out FILE.json
                                                         [--parts backbone neck rpn_head roi_head]
                                                         [--kind both|weight|act]

A part is a top-level child of the detector (``backbone``, ``neck``, ``rpn_head``, ``roi_head``,
``bbox_head``) or any module below one (``roi_head.bbox_head.fc_cls``). Its weight and / or
activation quantizers (``--kind``) are turned off (BRECQ's ``set_quant_state``,
Li et al., ICLR 2021) and the detector is evaluated on the test set; ``recovered`` is that AP minus
the fully quantized AP, i.e. the part's share of the quantization loss (the parts' shares need not
add up: losses compound). Nothing is re-quantized; the checkpoint is read as ``tools/test.py`` wrote it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.evaluate import evaluate
from mmdet_ext.prepare import prepare
from rdoq_plugins.errors import InputError
from rdoq_plugins.modules.switch import quantizers


# Which quantizers --kind turns off: all, the weights' or the activations'.
KINDS: dict[str, bool | None] = {"both": None, "weight": True, "act": False}


def parts_of(det: Any) -> list[str]:
    """The detector's top-level children that hold quantizers, in model order."""
    return [name for name, child in det.named_children() if next(quantizers(child), None) is not None]


def diagnose(config: Path, checkpoint: Path, parts: list[str] | None, kind: str = "both") -> dict[str, Any]:
    prep = prepare(config, checkpoint, Path("work_dirs") / "head_diagnosis", None, need_calib=False)
    if not prep.quantized_checkpoint:
        raise InputError(f"{checkpoint} is not a quantized checkpoint: quantize first (tools/test.py)")
    return {"config": str(config), "checkpoint": str(checkpoint),
            **diagnose_model(prep, prep.model.eval(), parts, kind)}


def diagnose_model(prep: Any, det: Any, parts: list[str] | None, kind: str = "both") -> dict[str, Any]:
    """The fully quantized AP and one row per part; each quantizer ends in the state it started in."""
    present = parts_of(det)
    chosen = parts or present
    modules = dict(det.named_modules())
    unknown = [p for p in chosen if p.split(".")[0] not in present or p not in modules]
    if unknown:
        raise InputError(f"--parts {unknown}: not a quantized part of this detector (have {present} and the "
                         "modules below them)")
    if kind not in KINDS:
        raise InputError(f"--kind {kind!r}: not one of {list(KINDS)}")
    quant, _ = evaluate(prep, det, "all quantized", ["bbox"])
    rows = []
    for part in chosen:
        states = [(q, bool(q.fake_quant_enabled)) for q in quantizers(modules[part], KINDS[kind])]
        for q, _ in states:
            q.enable_fake_quant(False)
        ap, seconds = evaluate(prep, det, f"{part} FP ({kind})", ["bbox"])
        for q, on in states:
            q.enable_fake_quant(on)
        rows.append({"part": part, "kind": kind, "quantizers": len(states),
                     "bbox_mAP_part_fp": ap["bbox_mAP"], "recovered": round(ap["bbox_mAP"] - quant["bbox_mAP"], 4),
                     "eval_s": round(seconds, 1)})
    return {"bbox_mAP_quant": quant["bbox_mAP"], "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("checkpoint", type=Path, help="quantized.pth written by tools/test.py")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="+", help="default: every quantized top-level part")
    parser.add_argument("--kind", default="both", choices=list(KINDS), help="which quantizers to turn off")
    args = parser.parse_args(argv)
    result = diagnose(args.config, args.checkpoint, args.parts, args.kind)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
