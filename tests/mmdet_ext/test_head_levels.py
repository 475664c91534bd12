"""Per-level input quantizers of the dense heads (``mmdet_ext.head_levels``): one step per FPN level
on RetinaNet's head and on the RPN, none on the RoI head, and the ``per_level_act`` switch."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmdet_ext.detector import check_heads, quantize_detector
from mmdet_ext.quant_section import parse_quant_section
from rdoq_plugins import QuantLayer, load_quant_config, set_observer_state, set_quant_state
from rdoq_plugins.modules import LevelQuantizer
from tests.mmdet_ext.conftest import fused_detector


def _levels(model: Any, head: str) -> dict[str, int]:
    """``{layer: levels}`` of the per-level input quantizers under ``model.<head>``."""
    return {n: len(m.input_quantizer.levels) for n, m in getattr(model, head).named_modules()
            if isinstance(m, QuantLayer) and isinstance(m.input_quantizer, LevelQuantizer)}


def test_dense_heads_quantize_each_fpn_level_with_its_own_step(make_config: Callable[..., Path]) -> None:
    model = fused_detector(make_config, "retinanet_r50_narrow_digits.py")
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
    model = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
    quantize_detector(model, parse_quant_section({}), check_heads(model, {}))
    assert set(_levels(model, "rpn_head")) == {"rpn_conv", "rpn_cls", "rpn_reg"}
    assert _levels(model, "roi_head") == {}  # RoI features mix the levels: one quantizer
    for qcfg in (parse_quant_section({"per_level_act": False}),
                 load_quant_config({})):  # a quantized checkpoint's config from before the key: shared
        plain = fused_detector(make_config, "faster_rcnn_r50_narrow_digits.py")
        quantize_detector(plain, qcfg, check_heads(plain, {}))
        assert _levels(plain, "rpn_head") == {}
