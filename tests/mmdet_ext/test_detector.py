"""What the mmdet adapter quantizes and the reconstruction units, on the bundled architectures."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mmdet_ext.detector import check_heads, detector_units, quantize_detector
from rdoq_plugins import QuantLayer, load_quant_config, set_quant_state
from rdoq_plugins.config import ConfigError
from rdoq_plugins.recon import capture_calls
from tests.mmdet_ext.conftest import fused_detector


def test_faster_rcnn_quantizes_backbone_neck_and_both_heads(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
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
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    quantize_detector(model, load_quant_config({}), check_heads(model, {"roi_head": False}))
    assert not any(isinstance(m, QuantLayer) for m in model.roi_head.modules())
    assert any(isinstance(m, QuantLayer) for m in model.rpn_head.modules())


def test_retinanet_units_cover_towers_predictors_and_extra_convs(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "retinanet_r50_narrow_digits.py")
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
