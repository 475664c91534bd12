"""rdoq_bench.run_export's bookkeeping (the rows themselves take minutes each: ``make bench-export``):
row names, rows without a checkpoint skipped, unchanged rows kept, changed ones redone; importing it
loads no framework."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rdoq_bench import run_export
from tests.rdoq_bench.test_package import _loaded_frameworks


def test_row_names() -> None:
    assert run_export.row_names("faster_rcnn_rdoq-both_w4a4_c64_scores") == ("faster_rcnn", "rdoq-both", "W4A4")
    assert run_export.row_names("retinanet_qdrop_w4a4_c64_i500") == ("retinanet", "qdrop", "W4A4")
    assert run_export.row_names("faster_rcnn_rdoq_w2a4_c64_scores") == ("faster_rcnn", "rdoq", "W2A4")
    with pytest.raises(ValueError, match="no method"):
        run_export.row_names("faster_rcnn_fp")


def test_rows_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, out = tmp_path / "repro", tmp_path / "export.json"
    for row in ("a_rdoq_w4a4", "b_qdrop_w4a4"):
        (root / row).mkdir(parents=True)
        (root / row / "quantized.pth").write_bytes(b"x")
    ran: list[str] = []

    def fake_row(row: str, *_: Any) -> dict[str, Any]:
        ran.append(row)
        stamp = run_export.checkpoint_stamp(root / row / "quantized.pth")
        return {"row": row, "checkpoint_stamp": stamp, **dict.fromkeys(
            ("ap_fakequant", "ap_onnxruntime", "max_rel_diff", "size_bytes_packed", "latency_ms",
             "latency_ms_fp32", "time_s"), 0)}

    monkeypatch.setattr(run_export, "run_row", fake_row)
    argv = ["--root", str(root), "--out", str(out), "--rows", "a_rdoq_w4a4", "b_qdrop_w4a4", "c_minmax_w4a4"]
    run_export.main(argv)
    assert ran == ["a_rdoq_w4a4", "b_qdrop_w4a4"]  # c has no checkpoint
    assert [r["row"] for r in json.loads(out.read_text())] == ["a_rdoq_w4a4", "b_qdrop_w4a4"]
    (root / "b_qdrop_w4a4" / "quantized.pth").write_bytes(b"changed")
    rows = run_export.main(argv)
    assert ran == ["a_rdoq_w4a4", "b_qdrop_w4a4", "b_qdrop_w4a4"] and len(rows) == 2


def test_a_work_dir_outside_root_is_a_named_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = tmp_path / "runs" / "faster_rcnn_w4_grid", tmp_path / "export.json"
    work.mkdir(parents=True)
    (work / "quantized.pth").write_bytes(b"x")
    ran: list[tuple[str, Path]] = []

    def fake_row(row: str, where: Path, *_: Any) -> dict[str, Any]:
        ran.append((row, where))
        return {"row": row, "checkpoint_stamp": run_export.checkpoint_stamp(where / "quantized.pth"), **dict.fromkeys(
            ("ap_fakequant", "ap_onnxruntime", "max_rel_diff", "size_bytes_packed", "latency_ms",
             "latency_ms_fp32", "time_s"), 0)}

    monkeypatch.setattr(run_export, "run_row", fake_row)
    run_export.main(["--work-dir", str(work), "--name", "faster_rcnn_qdrop_w4a4_grid", "--out", str(out)])
    assert ran == [("faster_rcnn_qdrop_w4a4_grid", work)]
    with pytest.raises(ValueError, match="no method"):
        run_export.main(["--work-dir", str(work), "--name", "faster_rcnn_w4_grid", "--out", str(out)])


def test_import_loads_no_framework() -> None:
    assert _loaded_frameworks("rdoq_bench.run_export") == []


def test_table_has_a_line_per_row() -> None:
    row = {"model": "retinanet", "method": "qdrop", "bits": "W4A4", "ap_fakequant": 0.6123, "ap_onnxruntime": 0.6159,
           "max_rel_diff": 1.1e-6, "max_rel_diff_propagated": 0.121, "size_bytes_packed": 1285025,
           "size_bytes_predicted": 1262104, "size_bytes_fp32": 9370744, "latency_ms": 56.6, "latency_ms_fp32": 56.8}
    lines = run_export.table([row, row]).splitlines()
    assert len(lines) == 4 and lines[1].count("---") == lines[0].count("|") - 1
    assert "| retinanet | qdrop W4A4 | 0.6123 | 0.6159 | 1.1e-06 | 0.12 | n/a | 1,285,025 |" in lines[2]
    assert "| 0.12 | 3.1e-07 | 1,285,025 |" in run_export.table([{**row, "max_rel_diff_deployed": 3.1e-7}])
