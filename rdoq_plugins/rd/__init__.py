"""Rate-distortion curves per channel group (RDOQ, Wang et al., "RDO-Q", ECCV 2022).

Curves come from measured output distortion (:func:`measured_curves`) or from a second-order
estimate with a few backward passes (:func:`second_order_curves`); :func:`curve_table` and
:func:`apply_choice` turn an allocation into per-group quantizers.
"""
from rdoq_plugins.rd.apply import CurveTable, apply_choice, curve_table, predicted_distortion, set_group_grid
from rdoq_plugins.rd.candidates import CandidateGrid, candidate_qparams, group_ranges, quantize_groups
from rdoq_plugins.rd.curve import LayerCurve, TensorKind
from rdoq_plugins.rd.measured import measured_curves
from rdoq_plugins.rd.second_order import UnseenLayerError, second_order_curves
from rdoq_plugins.rd.spec import CurveSpec
from rdoq_plugins.rd.store import CurveStore
from rdoq_plugins.rd.target import output_distortion, projection_loss

__all__ = [
    "CandidateGrid",
    "CurveSpec",
    "CurveStore",
    "CurveTable",
    "LayerCurve",
    "TensorKind",
    "UnseenLayerError",
    "apply_choice",
    "candidate_qparams",
    "curve_table",
    "group_ranges",
    "measured_curves",
    "output_distortion",
    "predicted_distortion",
    "projection_loss",
    "quantize_groups",
    "second_order_curves",
    "set_group_grid",
]
