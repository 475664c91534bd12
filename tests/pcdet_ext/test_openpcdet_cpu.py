"""OpenPCDet on CPU without its build: the stand-ins of :mod:`pcdet_ext.standins` (used only where
the real module is missing) and the patches of :mod:`pcdet_ext.openpcdet_cpu`, on a tiny package
named ``pcdet`` laid out as OpenPCDet's, in a fresh process (both change interpreter-wide state)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("spconv.pytorch")

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the patches apply without CUDA only")

# OpenPCDet's layout, reduced to what the patches touch: iou3d_nms_utils imports the compiled op
# and allocates a CUDA tensor; the head calls .cuda() while it is built.
FILES = {
    "pcdet/__init__.py": "from .version import __version__\n",
    "pcdet/ops/__init__.py": "",
    "pcdet/ops/iou3d_nms/__init__.py": "",
    "pcdet/ops/iou3d_nms/iou3d_nms_utils.py": textwrap.dedent("""
        import torch
        from . import iou3d_nms_cuda

        def boxes_iou_bev(boxes_a, boxes_b):
            out = torch.cuda.FloatTensor(torch.Size((boxes_a.shape[0], boxes_b.shape[0]))).zero_()
            iou3d_nms_cuda.boxes_iou_bev_gpu(boxes_a, boxes_b, out)
            return out
        """),
    "pcdet/ops/roiaware_pool3d/__init__.py": "",
    "pcdet/ops/roiaware_pool3d/roiaware_pool3d_utils.py": "from . import roiaware_pool3d_cuda\n",
    "pcdet/models/__init__.py": "",
    "pcdet/models/head.py": textwrap.dedent("""
        import torch
        from av2.utils.io import read_feather

        def build():
            return torch.Tensor([-54.0, 54.0]).cuda()
        """),
    "built/pcdet_like/__init__.py": "",
}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    import pcdet_ext
    from pcdet_ext.standins import install_standins, standins_in_use

    def attempt(fn):
        try:
            fn()
            return "ok"
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"

    out = {"before_install": attempt(lambda: __import__("pcdet"))}
    out["spconv_only"] = pcdet_ext.apply_cpu_patches()
    install_standins()
    install_standins()
    out["finders"] = sum(type(f).__name__ == "StandinFinder" for f in sys.meta_path)
    import pcdet
    from pcdet.models import head
    from pcdet.ops.iou3d_nms import iou3d_nms_utils
    from pcdet.ops.roiaware_pool3d import roiaware_pool3d_cuda
    out["version"] = pcdet.__version__
    out["in_use"] = standins_in_use()
    out["unused_op"] = attempt(lambda: roiaware_pool3d_cuda.points_in_boxes_cpu(1, 2))
    out["av2_call"] = attempt(lambda: head.read_feather("x"))
    boxes = torch.tensor([[0.0, 0, 0, 2, 2, 1, 0], [1.0, 0, 0, 2, 2, 1, 0]])
    out["head_before"] = attempt(head.build)
    out["iou_before"] = attempt(lambda: iou3d_nms_utils.boxes_iou_bev(boxes, boxes))
    out["first"] = pcdet_ext.apply_cpu_patches()
    out["second"] = pcdet_ext.apply_cpu_patches()
    out["head_after"] = head.build().device.type
    out["iou_after"] = iou3d_nms_utils.boxes_iou_bev(boxes, boxes).tolist()
    out["cuda_elsewhere"] = attempt(lambda: torch.zeros(1).cuda())
    print(json.dumps(out))
    """
)


def test_unbuilt_openpcdet_imports_and_runs_on_cpu(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before_install"].startswith("ModuleNotFoundError") and "pcdet.version" in out["before_install"]
    assert len(out["spconv_only"]) == 3  # no pcdet loaded: spconv's patches only
    assert out["finders"] == 1
    assert out["version"].startswith("0.0.0+standin")
    assert {"pcdet.version", "pcdet.ops.iou3d_nms.iou3d_nms_cuda", "pcdet.ops.roiaware_pool3d.roiaware_pool3d_cuda",
            "av2", "av2.utils", "av2.utils.io"} == set(out["in_use"])
    assert out["unused_op"].startswith("NotImplementedError") and "roiaware_pool3d_cuda" in out["unused_op"]
    assert out["av2_call"].startswith("NotImplementedError") and "read_feather" in out["av2_call"]
    assert "NVIDIA" in out["head_before"] or "CUDA" in out["head_before"] or "cuda" in out["head_before"]
    assert out["iou_before"] != "ok"
    assert len(out["first"]) == 5 and out["second"] == out["first"]
    assert out["head_after"] == "cpu"
    assert [v for row in out["iou_after"] for v in row] == pytest.approx([1.0, 1 / 3, 1 / 3, 1.0])
    assert out["cuda_elsewhere"] != "ok"  # only OpenPCDet's own .cuda() calls stay on CPU


def test_a_real_module_wins_over_its_stand_in(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "pcdet" / "version.py").write_text("__version__ = '0.6.0'\n")
    (tmp_path / "pcdet/ops/roiaware_pool3d/roiaware_pool3d_cuda.py").write_text("BUILT = True\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pcdet_ext.standins import install_standins, "
            "standins_in_use; install_standins(); import pcdet; "
            "from pcdet.ops.roiaware_pool3d import roiaware_pool3d_cuda as op; "
            "print(pcdet.__version__, op.BUILT, standins_in_use())")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["0.6.0", "True", "[]"]
