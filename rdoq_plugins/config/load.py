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


def plain(obj: Any) -> Any:
    """Framework config objects (attribute dicts, other mappings, tuples) as plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def merge_quant_section(section: Mapping[str, Any] | None, quant_file: Path | None, flag: str) -> dict[str, Any]:
    """A framework config's quant section with the YAML file's top-level keys laid over it (errors
    about the file name ``flag``, e.g. ``--quant-config``)."""
    data = plain(section or {})
    if quant_file is not None:
        data.update(read_yaml_mapping(quant_file, flag))
    return data


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
