"""The quantization config schema (dict or YAML), validated before any work starts."""
from rdoq_plugins.config.errors import ConfigError
from rdoq_plugins.config.load import load_quant_config
from rdoq_plugins.config.rdoq import Estimator, RDOQConfig, Target
from rdoq_plugins.config.schema import (
    EarlyStopConfig,
    LayerQConfig,
    QuantConfig,
    QuantizerConfig,
    ReconConfig,
)

__all__ = [
    "ConfigError",
    "EarlyStopConfig",
    "Estimator",
    "LayerQConfig",
    "QuantConfig",
    "QuantizerConfig",
    "RDOQConfig",
    "ReconConfig",
    "Target",
    "load_quant_config",
]
