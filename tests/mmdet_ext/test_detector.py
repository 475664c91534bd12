"""What the mmdet adapter quantizes and the reconstruction units, on the bundled architectures."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mmcv import Config
from mmdet.models import build_detector

from mmdet_ext.detector import check_heads, detector_units, quantize_detector
from rdoq_plugins import QuantLayer, fuse_conv_bn, load_quant_config
from rdoq_plugins.config import ConfigError


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
    assert {"neck.fpn_convs.3.conv", "rpn_head.rpn_cls", "roi_head.bbox_head.shared_fcs.1",
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
    assert {"neck.fpn_convs.4.conv", "bbox_head.cls_convs.3.conv", "bbox_head.retina_cls",
            "bbox_head.retina_reg"} <= set(units)
    with pytest.raises(ConfigError, match="heads.rpn_head: this detector has no such head"):
        check_heads(model, {"rpn_head": False})
