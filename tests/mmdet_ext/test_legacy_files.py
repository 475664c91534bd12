"""A quantized checkpoint and a resume state written by an earlier code version load with today's."""
from __future__ import annotations

from pathlib import Path

import torch
from mmcv import Config

import mmdet_ext  # noqa: F401  (registers the hooks)
from mmdet_ext.detector import DetectorAdapter
from mmdet_ext.prepare import build_quantized_model
from rdoq_plugins.workflow import Session, resume
from rdoq_plugins.workflow.checkpoint import read_checkpoint

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"


def test_legacy_quantized_checkpoint_gives_the_same_outputs() -> None:
    cfg = Config.fromfile(str(LEGACY / "tiny_retinanet.py"))
    path = LEGACY / "mmdet_quantized.pth"
    model, qcfg = build_quantized_model(cfg, read_checkpoint(path), path)
    assert qcfg.w_qconfig.bit == 4 and qcfg.extra["heads"] == {"bbox_head": True}
    saved = torch.load(LEGACY / "mmdet_outputs.pth", weights_only=True)
    with torch.no_grad():
        cls, reg = model.bbox_head(model.extract_feat(saved["input"]))
    for a, b in zip([*cls, *reg], [*saved["cls"], *saved["reg"]], strict=True):
        assert torch.equal(a, b)


def test_legacy_resume_state_resumes(tmp_path: Path) -> None:
    cfg = Config.fromfile(str(LEGACY / "tiny_retinanet.py"))
    path = LEGACY / "mmdet_quantized.pth"
    model, qcfg = build_quantized_model(cfg, read_checkpoint(path), path)
    for p in model.parameters():
        p.data.zero_()  # the state must bring the weights back
    work = tmp_path / "work"
    (work / "quant_state").mkdir(parents=True)
    (work / "quant_state" / "state.pth").write_bytes((LEGACY / "mmdet_state.pth").read_bytes())
    session = Session(model=model, fp_model=model, qcfg=qcfg, adapter=DetectorAdapter(model, torch.device("cpu"), []),
                      batches=[], work_dir=work, device=torch.device("cpu"), run_hash="legacy")
    point = resume(session)
    assert point is not None and point.stage == "recon" and len(point.done_units) == 2
    assert list(session.result.recon_units) == [point.done_units[0]]
    assert session.result.attempts == 2 and session.result.earlier_timings == {}  # no count or time stored
    state = torch.load(LEGACY / "mmdet_state.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
