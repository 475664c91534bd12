"""Deployable output of a quantized model: its integers (:mod:`.integers`) and the bit-packed
``weights.packed`` (:mod:`.packed`); torch and numpy only. The ONNX Q/DQ writer is
:mod:`rdoq_plugins.export.onnx_qdq` (imports ``onnx`` when called)."""
from rdoq_plugins.export.integers import (
           LayerIntegers,
           NotDeployableError,
           QuantParams,
           dequantize,
           weight_integers,
)
from rdoq_plugins.export.packed import (
           deployed_state_dict,
           load_packed,
           quantized_layers,
           read_header,
           write_packed,
)

__all__ = [
           "LayerIntegers",
           "NotDeployableError",
           "QuantParams",
           "deployed_state_dict",
           "dequantize",
           "load_packed",
           "quantized_layers",
           "read_header",
           "weight_integers",
           "write_packed",
]
