"""docs/config.md is the generated reference, it covers every schema key, and the docs' links resolve."""
from __future__ import annotations

import dataclasses
import re
from enum import Enum
from pathlib import Path

import pytest
import yaml

from rdoq_plugins.config import ConfigError, QuantConfig, RDOQConfig
from rdoq_plugins.config.reference import (
    DESCRIPTIONS,
    Section,
    config_reference,
    defaults_yaml,
    keys,
    main,
    sections,
    validator_text,
)
from rdoq_plugins.registry import ALLOCATORS

ROOT = Path(__file__).resolve().parents[3]
CONFIG_MD = ROOT / "docs" / "config.md"
SECTIONS = sections()


def _ids(section: Section) -> str:
    return section.cls.__name__


def test_docs_config_md_is_the_generated_reference() -> None:
    assert CONFIG_MD.read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is stale: run `make docs` (python -m rdoq_plugins.config.reference --write docs/config.md)")


def test_write_flag_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    main(["--write", str(out)])
    assert out.read_text(encoding="utf-8") == config_reference()


def _section_text(section: Section, text: str) -> str:
    return text.split(f"\n## {section.title}\n", 1)[1].split("\n## ", 1)[0]


def _row(section: Section, key: str, text: str) -> list[str]:
    line = next(line for line in _section_text(section, text).splitlines() if line.startswith(f"| `{key}` |"))
    return line.strip("| ").split(" | ")


@pytest.mark.parametrize("section", SECTIONS, ids=_ids)
def test_every_schema_key_has_a_row(section: Section) -> None:
    body = _section_text(section, CONFIG_MD.read_text(encoding="utf-8"))
    for field in keys(section.cls):
        assert f"| `{field.name}` |" in body, f"{section.title}: no row for {field.name}"


@pytest.mark.parametrize("section", SECTIONS, ids=_ids)
def test_documented_keys_are_the_keys_the_validator_accepts(section: Section) -> None:
    with pytest.raises(ConfigError) as err:
        section.validate({"no_such_key": 1})
    accepted = str(err.value).split("; allowed: ", 1)[1].split(", ")
    assert sorted(f.name for f in keys(section.cls)) == sorted(accepted)


def test_every_key_has_a_description_and_no_description_is_stale() -> None:
    assert sorted(DESCRIPTIONS) == sorted(s.cls.__name__ for s in SECTIONS)
    for section in SECTIONS:
        names = {f.name for f in keys(section.cls)}
        described = set(DESCRIPTIONS[section.cls.__name__])
        assert names - described == set(), f"{section.cls.__name__}: keys without a description"
        assert described - names == set(), f"{section.cls.__name__}: descriptions of keys that do not exist"


def _choice_fields() -> list[tuple[Section, str]]:
    out = []
    for section in SECTIONS:
        for field in keys(section.cls):
            if isinstance(field.default, Enum) or field.name in ("quantizer", "observer", "solver"):
                out.append((section, field.name))
    return out


@pytest.mark.parametrize(("section", "key"), _choice_fields(), ids=lambda v: getattr(v, "title", v))
def test_documented_choices_are_the_validators(section: Section, key: str) -> None:
    """Enums and registries give the choices the reference prints; the validator must agree."""
    allowed = _row(section, key, config_reference())[-2]
    assert set(re.findall(r"`(\w+)`", allowed)) == set(validator_text(section, key).split(", "))


def test_solvers_are_the_registered_allocators() -> None:
    rdoq = next(s for s in SECTIONS if s.cls is RDOQConfig)
    assert set(validator_text(rdoq, "solver").split(", ")) == set(ALLOCATORS)


def test_defaults_block_reads_back_as_the_defaults() -> None:
    data = yaml.safe_load(defaults_yaml())
    expected = dataclasses.replace(QuantConfig.from_dict({}), rdoq=RDOQConfig.from_dict({}))
    assert QuantConfig.from_dict(data) == expected
    assert data.keys() == {f.name for f in keys(QuantConfig)}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    missing = [t for t in _relative_links(doc) if not (doc.parent / t.split("#", 1)[0]).exists()]
    assert missing == [], f"{doc.name}: links to missing files: {missing}"
