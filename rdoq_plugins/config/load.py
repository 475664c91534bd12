"""Reading a quantization config from a dict or a YAML file."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from rdoq_plugins.config.errors import ConfigError
from rdoq_plugins.config.schema import QuantConfig


def read_yaml_mapping(path: Path, key: str = "<file>") -> dict[str, Any]:
    """The mapping at the top of a YAML file; errors name ``key`` (e.g. ``--quant-config``)."""
    if not path.is_file():
        raise ConfigError(key, "quantization config file not found", str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(key, f"not valid YAML ({err})", str(path)) from None
    if not isinstance(data, Mapping):
        raise ConfigError(key, "expected a mapping at the top level", str(path))
    return dict(data)


def load_quant_config(
    source: str | Path | Mapping[str, Any] | QuantConfig | None,
    extra_keys: Collection[str] = (),
) -> QuantConfig:
    """A validated :class:`QuantConfig` from a YAML path, a mapping, or a config (returned as is).

    None gives the defaults (QDrop's W4A4 settings).
    """
    if isinstance(source, QuantConfig):
        return source
    if source is None:
        return QuantConfig.from_dict({}, extra_keys)
    if isinstance(source, Mapping):
        return QuantConfig.from_dict(source, extra_keys)
    return QuantConfig.from_dict(read_yaml_mapping(Path(source)), extra_keys)
