"""What the mmdet adapter quantizes and the reconstruction units, on the bundled architectures."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from mmcv import Config
from mmdet.models import build_detector

from mmdet_ext.detector import check_heads, detector_units, quantize_detector
from mmdet_ext.quant_section import parse_quant_section
from rdoq_plugins import QuantLayer, fuse_conv_bn, load_quant_config, set_observer_state, set_quant_state
from rdoq_plugins.config import ConfigError
from rdoq_plugins.modules import LevelQuantizer
from rdoq_plugins.recon import capture_calls


def _model(make_config: Callable[..., Path], base: str):  # type: ignore[no-untyped-def]
    return fuse_conv_bn(build_detector(Config.fromfile(str(make_config(base, name="plain"))).model).eval())


def test_faster_rcnn_quantizes_backbone_neck_and_both_heads(make_config: Callable[..., Path]) -> None:
    model = _model(make_config, "faster_rcnn_r50_narrow_digits.py")
    wrapped = quantize_detector(model, load_quant_config({}), check_heads(model, {}))
    assert all(isinstance(m, QuantLayer) for m in wrapped.values())
    layers = [n for n, m in model.named_modules() if hasattr(m, "weight") and m.weight is not None
              and m.weight.dim() > 1]
    assert sorted(wrapped) == sorted(layers)  # every conv / linear
    units = detector_units(model)
    assert units[:2] == ["backbone.conv1", "backbone.layer1.0"]
    assert sum(u.startswith("backbone.layer") for u in units) == 16  # R50: 3 + 4 + 6 + 3 blocks
    assert {"neck.fpn_convs.3", "rpn_head.rpn_cls", "roi_head.bbox_head.shared_fcs.1",
            "roi_head.bbox_head.fc_reg"} <= set(units)
    assert all(wrapped[n].input_quantizer is not None for n in wrapped)


def test_a_head_can_stay_fp(make_config: Callable[..., Path]) -> None:
    model = _model(make_config, "faster_rcnn_r50_narrow_digits.py")
    quantize_detector(model, load_quant_config({}), check_heads(model, {"roi_head": False}))
    assert not any(isinstance(m, QuantLayer) for m in model.roi_head.modules())
    assert any(isinstance(m, QuantLayer) for m in model.rpn_head.modules())


def test_retinanet_units_cover_towers_predictors_and_extra_convs(make_config: Callable[..., Path]) -> None:
    model = _model(make_config, "retinanet_r50_narrow_digits.py")
    quantize_detector(model, load_quant_config({}), check_heads(model, {}))
    units = detector_units(model)
    assert {"neck.fpn_convs.4", "bbox_head.cls_convs.3", "bbox_head.retina_cls",
            "bbox_head.retina_reg"} <= set(units)
    # A tower unit is the ConvModule: its output, what reconstruction fits, is after the ReLU.
    set_quant_state(model, weight=False, act=False)
    calls = capture_calls(model, model.get_submodule("bbox_head.cls_convs.0"), torch.randn(1, 3, 64, 64),
                          lambda m, b: m.forward_dummy(b))
    assert len(calls) == 5 and all(float(out.min()) >= 0.0 for _, out in calls)
    assert any(float(inp.min()) < 0.0 for inp, _ in calls)
    with pytest.raises(ConfigError, match="heads.rpn_head: this detector has no such head"):
        check_heads(model, {"rpn_head": False})


def _levels(model: Any, head: str) -> dict[str, int]:
    """``{layer: levels}`` of the per-level input quantizers under ``model.<head>``."""
    return {n: len(m.input_quantizer.levels) for n, m in getattr(model, head).named_modules()
            if isinstance(m, QuantLayer) and isinstance(m.input_quantizer, LevelQuantizer)}


def test_dense_heads_quantize_each_fpn_level_with_its_own_step(make_config: Callable[..., Path]) -> None:
    model = _model(make_config, "retinanet_r50_narrow_digits.py")
    head_type = type(model.bbox_head)
    quantize_detector(model, parse_quant_section({"a_qconfig": {"observer": "MinMaxObserver"}}), check_heads(model, {}))
    assert isinstance(model.bbox_head, head_type) and type(model.bbox_head).__name__ == head_type.__name__
    levels = _levels(model, "bbox_head")
    assert len(levels) == 10 and set(levels.values()) == {5}  # 2 x 4 tower convs + 2 predictors, P3-P7
    assert not any(isinstance(m, LevelQuantizer) for m in model.neck.modules())
    set_observer_state(model, act=True)
    set_quant_state(model, weight=False, act=False)
    with torch.no_grad():
        model.forward_dummy(torch.randn(1, 3, 64, 64) * 50)
    q = model.bbox_head.cls_convs[0].conv.input_quantizer
    spans = [float(level.observer.hi - level.observer.lo) for level in q.levels]
    assert len(set(spans)) == 5 and min(spans) > 0  # every level observed its own tensor
    assert model.bbox_head._level_cursor.level is None


def test_rpn_head_levels_and_the_switch(make_config: Callable[..., Path]) -> None:
    model = _model(make_config, "faster_rcnn_r50_narrow_digits.py")
    quantize_detector(model, parse_quant_section({}), check_heads(model, {}))
    assert set(_levels(model, "rpn_head")) == {"rpn_conv", "rpn_cls", "rpn_reg"}
    assert _levels(model, "roi_head") == {}  # RoI features mix the levels: one quantizer
    for qcfg in (parse_quant_section({"per_level_act": False}),
                 load_quant_config({})):  # a quantized checkpoint's config from before the key: shared
        plain = _model(make_config, "faster_rcnn_r50_narrow_digits.py")
        quantize_detector(plain, qcfg, check_heads(plain, {}))
        assert _levels(plain, "rpn_head") == {}
