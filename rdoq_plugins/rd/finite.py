"""No NaN escapes an RD curve run: non-finite weights or curves stop it, naming the layer.

A NaN weight makes every output, every gradient (the second-order sensitivity) and so every
distortion NaN, and a NaN curve would make the allocation meaningless without any error. The
model is checked before the curves are computed (the message names the tensor that holds the
value), each curve before it is stored (the message names its layer).
"""
from __future__ import annotations

import torch
from torch import nn

from rdoq_plugins.errors import NonFiniteError
from rdoq_plugins.finite import bad_values as _bad
from rdoq_plugins.modules.switch import quantizers
from rdoq_plugins.rd.curve import LayerCurve

__all__ = ["NonFiniteError", "check_curve_finite", "check_model_finite"]


def check_model_finite(model: nn.Module) -> None:
    """Raises :class:`NonFiniteError` naming the first parameter of ``model`` with a NaN or
    infinite value. The quantizers' own tensors are left out: curves are taken with them off."""
    own = {id(t) for q in quantizers(model) for t in (*q.parameters(), *q.buffers())}
    for name, t in model.named_parameters():
        if id(t) in own:
            continue
        bad = _bad(t.detach())
        if bad:
            raise NonFiniteError(f"RD curves: {name} holds {bad} non-finite values (of {t.numel()}); "
                                 "every distortion would be NaN")


def check_curve_finite(curve: LayerCurve) -> None:
    """Raises :class:`NonFiniteError` naming the curve's layer when its distortion (the
    sensitivity times the quantization error), ranges or element counts are not all finite."""
    parts = {"distortion": curve.distortion, "range": torch.cat([curve.lo.flatten(), curve.hi.flatten()]),
             "elements": curve.elements}
    for what, t in parts.items():
        bad = _bad(t)
        if bad:
            raise NonFiniteError(f"RD curves: the {curve.kind.value} curve of layer {curve.layer} has {bad} "
                                 f"non-finite {what} values (of {t.numel()}); nothing of it was stored")
