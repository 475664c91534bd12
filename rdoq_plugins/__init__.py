"""rdoq-plugins core: framework-agnostic post-training quantization (QDrop, RDOQ).

Imports torch, numpy, scipy and PyYAML only; never a detection framework.
"""
import rdoq_plugins.alloc  # noqa: F401  (fills the allocator registry)
from rdoq_plugins.calibration import calibrate, calibrate_weights
from rdoq_plugins.config import ConfigError, QuantConfig, load_quant_config
from rdoq_plugins.granularity import PerChannel, PerGroup, PerTensor
from rdoq_plugins.modules import (
    ActPosition,
    QuantAct,
    QuantLayer,
    fuse_conv_bn,
    quantize_model,
    register_quant_layer,
    set_observer_state,
    set_quant_state,
)
from rdoq_plugins.quant import AdaRoundFakeQuantize, FakeQuantize, LSQFakeQuantize, RoundMode
from rdoq_plugins.recon import QDropReconstructor, TensorCache
from rdoq_plugins.registry import ALLOCATORS, OBSERVERS, QUANTIZERS, RECONSTRUCTORS, Registry

__version__ = "0.1.0"

__all__ = [
    "ALLOCATORS",
    "OBSERVERS",
    "QUANTIZERS",
    "RECONSTRUCTORS",
    "ActPosition",
    "AdaRoundFakeQuantize",
    "ConfigError",
    "FakeQuantize",
    "LSQFakeQuantize",
    "PerChannel",
    "PerGroup",
    "PerTensor",
    "QDropReconstructor",
    "QuantAct",
    "QuantConfig",
    "QuantLayer",
    "Registry",
    "RoundMode",
    "TensorCache",
    "calibrate",
    "calibrate_weights",
    "fuse_conv_bn",
    "load_quant_config",
    "quantize_model",
    "register_quant_layer",
    "set_observer_state",
    "set_quant_state",
]
