"""Reading a quantization config from a dict or a YAML file, and laying a file over a section.

A file is either in the core schema (the quant section's keys at its top level) or in the layout of
QDrop's ImageNet configs: the section under a top-level ``quant`` key, beside QDrop's ``model``,
``data`` and ``process``, which are not quantization settings; a warning names those it ignores.

:func:`merge_quant_section` lays a file over a framework config's section, key by key:

- a mapping in the file is merged into the section's mapping of the same key (an empty one where
  the section has none), at any depth;
- anything else (a number, a string, a list) replaces the section's value;
- ``overrides`` are merged by layer name: the file's entry for a name replaces the section's entry
  for that name whole, the section's other names are kept; the file's entries come first, so its
  ``re:`` patterns are tried before the section's;
- ``null`` at the top level is the value, as in the schema: ``recon: null`` turns reconstruction
  off, ``rdoq: null`` turns RDOQ off, ``overrides: null`` drops every override of the section;
- ``null`` inside a mapping deletes the section's key, so its default applies (e.g.
  ``recon: {early_stop: null}``), except in an ``overrides`` entry, where ``null`` keeps the layer
  (or its weights, or its input) FP, as in the schema.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from rdoq_plugins.config.errors import ConfigError
from rdoq_plugins.config.schema import CORE_KEYS, QuantConfig

logger = logging.getLogger("rdoq_plugins")

# QDrop's layout (its ImageNet ``exp/*/config.yaml``): the quant section under this key ...
QDROP_SECTION = "quant"
# ... beside these keys, which a detection framework's own config replaces: why each is ignored.
QDROP_IGNORED: dict[str, str] = {
    "model": "the model and its weights are the framework config's and the checkpoint's",
    "data": "the data are the framework config's; the quant section's calib key picks the calibration images",
    "process": "run settings; the calibration seed is the quant section's calib.seed",
}


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


def quant_mapping(data: Mapping[str, Any], source: str, extra_keys: Collection[str] = ()) -> dict[str, Any]:
    """The quant section a file's top-level mapping holds: the mapping itself (core schema), or
    its ``quant`` mapping (QDrop's layout), with a warning naming the other top-level keys that
    are ignored and why. ``source`` names the file in messages; a section key (core or
    ``extra_keys``) beside ``quant`` is an error, as it would be ignored."""
    if QDROP_SECTION not in data:
        return dict(data)
    section = data[QDROP_SECTION]
    if not isinstance(section, Mapping):
        raise ConfigError(QDROP_SECTION, f"expected a mapping (QDrop's layout) in {source}", section)
    beside = [str(k) for k in data if k != QDROP_SECTION]
    for key in beside:
        if key in CORE_KEYS or key in extra_keys:
            raise ConfigError(key, f"beside the top-level {QDROP_SECTION!r} mapping of {source} (QDrop's "
                              f"layout), where it would be ignored: move it into {QDROP_SECTION!r}")
    if beside:
        reasons = "; ".join(f"{k} ({QDROP_IGNORED.get(k, 'not a quantization setting')})" for k in beside)
        logger.warning("%s: QDrop's layout: reading its %r section; ignoring the other top-level keys: %s",
                       source, QDROP_SECTION, reasons)
    return dict(section)


def lay_over(base: Mapping[str, Any], over: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``over`` merged into ``base`` by the rules of :func:`merge_quant_section` (``path``: the
    key both mappings sit at, empty at the top level). Neither argument is changed."""
    out = plain(base)
    for key, value in plain(over).items():
        old = out.get(key)
        if not isinstance(old, Mapping):
            old = {}
        if path and value is None:
            out.pop(key, None)
        elif not path and key == "overrides" and isinstance(value, Mapping):
            out[key] = {**value, **{name: v for name, v in old.items() if name not in value}}
        elif isinstance(value, Mapping):
            out[key] = lay_over(old, value, f"{path}.{key}" if path else str(key))
        else:
            out[key] = value
    return out


def merge_quant_section(section: Mapping[str, Any] | None, quant_file: Path | None, flag: str,
                        extra_keys: Collection[str] = ()) -> dict[str, Any]:
    """A framework config's quant section with the YAML file merged into it (see the module's
    rules); the file may be in QDrop's layout. Errors about the file name ``flag`` (e.g.
    ``--quant-config``); ``extra_keys`` are the adapter's section keys beside the core ones."""
    data = plain(section or {})
    if quant_file is None:
        return data
    file_section = quant_mapping(read_yaml_mapping(quant_file, flag), f"{flag} {quant_file}", extra_keys)
    return lay_over(data, file_section)


def load_quant_config(
    source: str | Path | Mapping[str, Any] | QuantConfig | None,
    extra_keys: Collection[str] = (),
) -> QuantConfig:
    """A validated :class:`QuantConfig` from a YAML path (core schema or QDrop's layout), a
    mapping, or a config (returned as is).

    None gives the defaults (QDrop's W4A4 settings).
    """
    if isinstance(source, QuantConfig):
        return source
    if source is None:
        return QuantConfig.from_dict({}, extra_keys)
    if isinstance(source, Mapping):
        return QuantConfig.from_dict(source, extra_keys)
    section = quant_mapping(read_yaml_mapping(Path(source)), str(source), extra_keys)
    return QuantConfig.from_dict(section, extra_keys)
