"""The config reference (``docs/config.md``), generated from the schema so that it cannot go stale.

Keys and types come from the dataclasses (:func:`dataclasses.fields`), defaults from what
``from_dict({})`` builds, choices from the enums and registries, and every other allowed value from
the validator itself: each key is given a value of the wrong type, and the ``allowed`` part of the
:class:`~rdoq_plugins.config.errors.ConfigError` it raises is what the table prints. The only text
written by hand, the one-line meaning of each key (:data:`DESCRIPTIONS`) and the page's paragraphs,
lives in :mod:`rdoq_plugins.config.reference_text`.

Adapters accept keys of their own beside these (``QuantConfig.from_dict(..., extra_keys=...)``);
their guides document them.

Usage::

    python -m rdoq_plugins.config.reference > docs/config.md
    python -m rdoq_plugins.config.reference --write docs/config.md
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

import rdoq_plugins.alloc  # noqa: F401  (fills the allocator registry)
from rdoq_plugins.config.errors import ConfigError
from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.config.reference_text import (
    DEFAULTS_NOTE,
    DESCRIPTIONS,
    INTROS,
    MERGING,
    MERGING_TITLE,
    PREAMBLE,
)
from rdoq_plugins.config.schema import (
    EarlyStopConfig,
    LayerQConfig,
    QuantConfig,
    QuantizerConfig,
    ReconConfig,
)
from rdoq_plugins.registry import ALLOCATORS, OBSERVERS, QUANTIZERS, Registry

COMMAND = "python -m rdoq_plugins.config.reference --write docs/config.md"

# Dataclass fields that are not config keys.
NOT_KEYS = {"QuantConfig": {"extra"}}

# Keys held as ordered (name, value) pairs but written as a mapping.
MAPPING_KEYS = {("QuantConfig", "overrides")}

# Keys the validator reads only beside another key's value: probed with it.
PROBE_CONTEXT: dict[tuple[str, str], dict[str, Any]] = {("RDOQConfig", "act_rate"): {"target": "both"}}


@dataclasses.dataclass(frozen=True)
class Section:
    """One table of the reference: the keys of the schema dataclass ``cls``."""

    title: str
    cls: type
    intro: str
    defaults: tuple[tuple[str, Any], ...]  # (column, instance holding the effective defaults)
    validate: Callable[[dict[str, Any]], object]  # reads a partial mapping of this section

    @property
    def anchor(self) -> str:
        """GitHub's anchor for the section's heading."""
        return re.sub(r"[^\w\- ]", "", self.title.lower()).replace(" ", "-")


def sections() -> list[Section]:
    """The reference's tables, in order (their intros are :data:`INTROS`)."""
    top = QuantConfig.from_dict({})
    return [
        Section("Top level", QuantConfig, INTROS["QuantConfig"], (("default", top),), QuantConfig.from_dict),
        Section("w_qconfig and a_qconfig", QuantizerConfig, INTROS["QuantizerConfig"],
                (("w_qconfig default", top.w_qconfig), ("a_qconfig default", top.a_qconfig)),
                lambda d: QuantizerConfig.from_dict(d, "w_qconfig", top.w_qconfig, weight=True)),
        Section("recon", ReconConfig, INTROS["ReconConfig"], (("default", top.recon),),
                lambda d: ReconConfig.from_dict(d, "recon")),
        Section("recon.early_stop", EarlyStopConfig, INTROS["EarlyStopConfig"],
                (("default", EarlyStopConfig.from_dict({}, "recon.early_stop")),),
                lambda d: EarlyStopConfig.from_dict(d, "recon.early_stop")),
        Section("rdoq", RDOQConfig, INTROS["RDOQConfig"], (("default", RDOQConfig.from_dict({})),),
                RDOQConfig.from_dict),
        Section("overrides", LayerQConfig, INTROS["LayerQConfig"], (),
                lambda d: QuantConfig.from_dict({"overrides": {"layer": d}})),
    ]


def _registry_names(registry: Registry[Any], keep: Callable[[Any], bool] = lambda cls: True) -> str:
    return ", ".join(f"`{name}`" for name, cls in registry.items() if keep(cls))


def _registry_choices(cls: type, key: str) -> str | None:
    """The choices of a key whose names live in a registry rather than an enum."""
    if cls is QuantizerConfig and key == "quantizer":
        acts = _registry_names(QUANTIZERS, lambda c: not getattr(c, "weight_only", False))
        return f"weights: {_registry_names(QUANTIZERS)}; inputs: {acts}"
    if cls is QuantizerConfig and key == "observer":
        return _registry_names(OBSERVERS)
    if cls is RDOQConfig and key == "solver":
        return _registry_names(ALLOCATORS)
    return None


class _WrongType:
    """A value no validator accepts; its error names what is allowed."""

    def __repr__(self) -> str:
        return "<wrong type>"


def validator_text(section: Section, key: str) -> str:
    """What the validator allows for ``key``: the ``allowed`` part of the error a wrong value raises
    (or its problem, when it names none)."""
    try:
        context = PROBE_CONTEXT.get((section.cls.__name__, key), {})
        section.validate({**context, key: _WrongType()})
    except ConfigError as err:
        text = str(err).removeprefix(f"quant config: {err.key}: ")
        if "; allowed: " in text:
            return text.split("; allowed: ", 1)[1]
        return text.split("; got ", 1)[0].removeprefix("expected ")
    raise RuntimeError(f"{section.title}: {key}: the validator accepted a value of the wrong type, so the "
                       "reference cannot say what it allows")


def _strip_none(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"no YAML name for the annotation {tp!r}")
        return rest[0], len(rest) < len(typing.get_args(tp))
    return tp, False


def type_text(tp: Any) -> str:
    """A field's annotation as YAML sees it: ``tuple[int, ...]`` is a list, a dataclass a mapping."""
    base, optional = _strip_none(tp)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        text = f"list of {type_text(args[0])}"
    elif origin is tuple:
        text = "[" + ", ".join(type_text(a) for a in args) + "]"
    elif isinstance(base, type) and issubclass(base, Enum):
        text = "str"
    elif dataclasses.is_dataclass(base):
        text = "mapping"
    elif base in (bool, int, str):
        text = base.__name__
    elif base is float:
        text = "number"
    else:
        raise TypeError(f"no YAML name for the annotation {tp!r}")
    return f"{text} or null" if optional else text


def keys(cls: type) -> list[dataclasses.Field[Any]]:
    """The config keys of a schema dataclass, in declaration order."""
    hidden = NOT_KEYS.get(cls.__name__, set())
    return [f for f in dataclasses.fields(cls) if f.name not in hidden]


def _value_text(value: Any, links: Mapping[type, Section]) -> str:
    if dataclasses.is_dataclass(value):
        target = links[type(value)]
        return f"see [{target.title}](#{target.anchor})"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip() + "`"


def _allowed_text(section: Section, field: dataclasses.Field[Any], hints: Mapping[str, Any],
                  links: Mapping[type, Section]) -> str:
    base, optional = _strip_none(hints[field.name])
    if isinstance(base, type) and issubclass(base, Enum):
        text = ", ".join(f"`{m.value}`" for m in base)
    elif dataclasses.is_dataclass(base):
        text = f"a mapping: see [{links[base].title}](#{links[base].anchor})"
    elif (section.cls.__name__, field.name) in MAPPING_KEYS:
        text = f"a mapping: see [{links[LayerQConfig].title}](#{links[LayerQConfig].anchor})"
    else:
        text = _registry_choices(section.cls, field.name) or validator_text(section, field.name)
    return f"{text}, or `null`" if optional else text


def _table(section: Section, links: Mapping[type, Section]) -> list[str]:
    hints = typing.get_type_hints(section.cls)
    described = DESCRIPTIONS.get(section.cls.__name__, {})
    head = ["key", "type", *(column for column, _ in section.defaults), "allowed", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for field in keys(section.cls):
        if field.name not in described:
            raise KeyError(f"{section.cls.__name__}.{field.name} has no line in DESCRIPTIONS")
        as_mapping = (section.cls.__name__, field.name) in MAPPING_KEYS
        kind = "mapping" if as_mapping else type_text(hints[field.name])
        values = [getattr(obj, field.name) for _, obj in section.defaults]
        defaults = [_value_text(dict(v) if as_mapping else v, links) for v in values]
        allowed = _allowed_text(section, field, hints, links)
        row = [f"`{field.name}`", kind, *defaults, allowed, described[field.name]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return lines


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists: ``weight_bits: [0, 1, 2]``."""


_Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=True))


def plain_defaults(obj: Any) -> Any:
    """A schema dataclass as the YAML that gives it: every key, enums as their values, lists."""
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for field in keys(type(obj)):
            value = getattr(obj, field.name)
            mapping = (type(obj).__name__, field.name) in MAPPING_KEYS
            out[field.name] = {k: plain_defaults(v) for k, v in value} if mapping else plain_defaults(value)
        return out
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, tuple):
        return [plain_defaults(v) for v in obj]
    return obj


def defaults_yaml() -> str:
    """The default config written out in full, with ``rdoq`` at its defaults too."""
    full = dataclasses.replace(QuantConfig.from_dict({}), rdoq=RDOQConfig.from_dict({}))
    return yaml.dump(plain_defaults(full), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=100).rstrip()


def config_reference() -> str:
    """The reference as markdown (links are relative to ``docs/``)."""
    all_sections = sections()
    links = {s.cls: s for s in all_sections}
    out = [
        "# Quantization config reference",
        "",
        f"<!-- Generated from rdoq_plugins/config by `{COMMAND}` (`make docs`). Do not edit by hand. -->",
        "",
        *PREAMBLE,
        "",
        "## Defaults",
        "",
        *DEFAULTS_NOTE,
        "",
        "```yaml",
        defaults_yaml(),
        "```",
    ]
    for section in all_sections:
        out += ["", f"## {section.title}", "", section.intro, "", *_table(section, links)]
    out += ["", f"## {MERGING_TITLE}", "", *MERGING]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print (or write) the quantization config reference.")
    parser.add_argument("--write", type=Path, metavar="PATH", help="write to PATH instead of stdout")
    args = parser.parse_args(argv)
    text = config_reference()
    if args.write is None:
        print(text, end="")
    else:
        args.write.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
