"""``a_qconfig.position: output`` on the bundled detectors: the quantizers sit where the official
QDrop code puts them (Wei et al., ICLR 2022), the FP model computes the same values, each output
step is learned (with dropping) in the unit that produces it, and a run through ``tools/test.py``
ends with a quantized.pth that reloads to the same outputs."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mmdet_ext.act_placement import fuse_relus
from mmdet_ext.detector import check_heads, quantize_detector
from mmdet_ext.quant_section import parse_quant_section
from rdoq_plugins import QuantLayer, calibrate, set_quant_state
from rdoq_plugins.config import ConfigError, ReconConfig
from rdoq_plugins.modules import LevelQuantizer
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.recon import QDropReconstructor, reconstruct_units
from tests.mmdet_ext.conftest import fused_detector, tool_fails
from tools.test import main as run_test_tool

FP_IMAGE = {"backbone.conv1": {"w_qconfig": {"bit": 8}, "a_qconfig": None}}  # the shipped first-conv override
OUTPUT = {"a_qconfig": {"position": "output"}, "overrides": FP_IMAGE}


def _act_quantizers(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, FakeQuantize) and not m.is_weight]


def _features(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.extract_feat(x))


def test_faster_rcnn_output_placement_is_the_official_one(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    x = torch.randn(1, 3, 96, 96)
    fp = _features(model, x)
    quantize_detector(model, parse_quant_section(OUTPUT), check_heads(model, {}))
    block = model.backbone.layer1[0]  # a Bottleneck with a downsample conv
    assert sorted(_act_quantizers(block)) == ["conv1.output_quantizer", "conv2.output_quantizer", "output_quantizer"]
    for conv in (block.conv1, block.conv2, block.conv3, block.downsample[0]):
        assert isinstance(conv, QuantLayer) and conv.input_quantizer is None
    assert block.conv3.output_quantizer is None and block.downsample[0].output_quantizer is None
    stem = model.backbone.conv1  # reads the FP image, its ReLU output is quantized
    assert stem.input_quantizer is None and stem.output_quantizer is not None
    assert stem.weight_quantizer.bits.unique().tolist() == [8]
    for lateral in model.neck.lateral_convs:
        assert lateral.conv.input_quantizer is None and lateral.conv.output_quantizer is not None
    assert all(c.conv.input_quantizer is not None for c in model.neck.fpn_convs)
    heads = [m for n, m in model.named_modules()
             if isinstance(m, QuantLayer) and n.startswith(("rpn_head", "roi_head"))]
    assert len(heads) == 7 and all(h.input_quantizer is not None and h.output_quantizer is None for h in heads)
    assert isinstance(model.rpn_head.rpn_conv.input_quantizer, LevelQuantizer)  # per-level steps kept
    names = _act_quantizers(model)
    # stem + 16 blocks x 3 + 4 laterals outputs; 4 fpn_convs + 7 head layers read an input quantizer
    assert sum(n.endswith("output_quantizer") for n in names) == 53
    assert len({n.split(".input_quantizer")[0] for n in names if ".input_quantizer" in n}) == 11
    set_quant_state(model, weight=False, act=False)  # the fused ReLUs change no value
    assert all(torch.equal(a, b) for a, b in zip(fp, _features(model, x)))


def test_retinanet_extra_conv_on_c5_reads_a_quantized_block_output(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "retinanet_r50_narrow_digits.py")
    quantize_detector(model, parse_quant_section(OUTPUT), check_heads(model, {}))
    names = _act_quantizers(model)
    assert sum(n.endswith("output_quantizer") for n in names) == 52  # stem + 48 + 3 laterals
    assert model.neck.add_extra_convs == "on_input" and model.neck.fpn_convs[3].conv.input_quantizer is None
    assert model.neck.fpn_convs[4].conv.input_quantizer is not None  # reads relu(P6)
    assert all(isinstance(m.input_quantizer, LevelQuantizer) for m in model.bbox_head.modules()
               if isinstance(m, QuantLayer))


def test_input_placement_is_unchanged(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    quantize_detector(model, parse_quant_section({"overrides": FP_IMAGE}), check_heads(model, {}))
    names = _act_quantizers(model)
    assert not any(n.endswith("output_quantizer") for n in names) and len(names) > 60
    assert type(model.backbone.conv1).__name__ == "QuantConv2d"


def test_each_output_step_is_learned_with_dropping_in_its_own_unit(make_config: Callable[..., Path]) -> None:
    fp_model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    qcfg = parse_quant_section({"a_qconfig": {"position": "output"}})
    fuse_relus(fp_model)
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    model.load_state_dict(fp_model.state_dict())
    quantize_detector(model, qcfg, check_heads(model, False))  # the heads stay FP: features only
    batches = [torch.randn(2, 3, 64, 64)]

    def run(m: nn.Module, b: torch.Tensor) -> Any:
        return m.extract_feat(b)

    calibrate(model, batches, run)
    set_quant_state(model, weight=True, act=True)
    names = ("backbone.conv1", "backbone.layer1.0.conv1", "backbone.layer1.0.conv2", "backbone.layer1.0",
             "backbone.layer1.1")  # the last one belongs to a unit that is not reconstructed here
    watched = {n: model.get_submodule(f"{n}.output_quantizer") for n in names}
    before = {n: q.scale.detach().clone() for n, q in watched.items()}
    seen: list[tuple[bool, float, float]] = []

    def note(q: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        if q.training:
            kept = float((out == q.quantize(args[0])).float().mean())
            seen.append((q.training, float(q.keep_prob), kept))

    hook = watched["backbone.layer1.0"].register_forward_hook(note)
    recon = QDropReconstructor(ReconConfig(iters=4, scale_lr=1e-2, drop_prob=0.5))
    reconstruct_units(model, fp_model, ["backbone.conv1", "backbone.layer1.0"], batches, run, recon)
    hook.remove()
    changed = {n: not torch.equal(before[n], q.scale) for n, q in watched.items()}
    assert changed == {**dict.fromkeys(names[:4], True), "backbone.layer1.1": False}
    assert len(seen) == 4 and all(t and p == 0.5 and 0.0 < kept < 1.0 for t, p, kept in seen)
    assert all(float(q.keep_prob) == 1.0 for q in watched.values())  # dropping off after the unit


def test_tool_run_reloads_to_the_same_outputs(make_config: Callable[..., Path],
                                              random_checkpoint: Callable[[str], Path],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.test

    quant = ("quant = dict(a_qconfig=dict(position='output'), calibrate=2, calib=dict(samples_per_gpu=2), "
             "recon=dict(iters=2, batch_size=1), "
             "overrides={'backbone.conv1': dict(w_qconfig=dict(bit=8), a_qconfig=None)})")
    config, ckpt = make_config(quant=quant, name="output_place"), random_checkpoint("faster_rcnn_r50_narrow_digits.py")
    models: list[nn.Module] = []
    original = tools.test.evaluate

    def keep(prep: Any, model: nn.Module, *args: Any) -> Any:
        models.append(model)
        return original(prep, model, *args)

    monkeypatch.setattr(tools.test, "evaluate", keep)
    report = run_test_tool([str(config), str(ckpt), "--work-dir", str(tmp_path / "q"), "--skip-fp"])
    assert len(report["recon_units"]) == 32 and "backbone.layer4.2" in report["recon_units"]
    run_test_tool([str(config), str(tmp_path / "q" / "quantized.pth"), "--work-dir", str(tmp_path / "eval")])
    first, again = models
    assert isinstance(again.backbone.layer1[0].output_quantizer, FakeQuantize)
    x = torch.randn(1, 3, 96, 96)
    a, b = _features(first, x), _features(again, x)
    assert all(torch.isfinite(t).all() for t in a)
    assert all(torch.equal(s, t) for s, t in zip(a, b))


def test_a_bad_position_is_a_one_line_error(make_config: Callable[..., Path],
                                            random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    config = make_config(quant="quant = dict(a_qconfig=dict(position='outputs'), calibrate=2)", name="bad_position")
    message = tool_fails(run_test_tool, [str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")),
                                         "--work-dir", str(tmp_path / "w")], ConfigError,
                         r"a_qconfig\.position: unknown value .*got 'outputs'; allowed: input, output", tmp_path / "w")
    assert "\n" not in message
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    conv2 = {"a_qconfig": {"position": "output"}, "overrides": {"backbone.layer1.0.conv2": {"a_qconfig": {"bit": 8}}}}
    with pytest.raises(ConfigError, match=r"overrides\.backbone\.layer1\.0\.conv2\.a_qconfig: .* would change nothing"):
        quantize_detector(model, parse_quant_section(conv2), check_heads(model, {}))
