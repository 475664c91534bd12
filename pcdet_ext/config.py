"""The quant section of an OpenPCDet config: the YAML config as OpenPCDet's ``test.py`` builds
it, its top-level ``QUANT`` key with ``--quant_cfg`` merged into it (mappings key by key,
``overrides`` by layer name; :mod:`rdoq_plugins.config.load`), then the ``--set QUANT.*`` pairs,
and the ``calib`` options."""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from rdoq_plugins import QuantConfig
from rdoq_plugins.config import ConfigError
from rdoq_plugins.config.errors import check_keys, get_bool, get_choice, get_int, join
from rdoq_plugins.config.load import lay_over, merge_quant_section
from rdoq_plugins.errors import InputError

QUANT_KEY = "QUANT"  # the quant section's key in an OpenPCDet YAML config
EXTRA_KEYS = ("calib",)
CALIB_DEFAULTS: dict[str, Any] = {"split": "train", "batch_size": 2, "seed": 1005, "augment": False}


def load_pcdet_config(pcdet: SimpleNamespace, cfg_path: str | Path, set_cfgs: Sequence[str] | None = None) -> Any:
    """A fresh OpenPCDet config (not the global ``pcdet.config.cfg``), as OpenPCDet's test.py
    builds it: ``cfg_from_yaml_file``, ``TAG``, ``EXP_GROUP_PATH``, then ``cfg_from_list`` with
    the ``--set`` pairs outside ``QUANT`` (:func:`quant_section` applies those)."""
    cfg_file = Path(cfg_path)
    if not cfg_file.is_file():
        raise FileNotFoundError(f"--cfg_file not found: {cfg_file}")
    base = pcdet.config.cfg
    cfg = type(base)()
    cfg.ROOT_DIR = base.ROOT_DIR
    cfg.LOCAL_RANK = 0
    try:
        pcdet.config.cfg_from_yaml_file(str(cfg_file), cfg)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{cfg_file}: {err.filename or err} not found; OpenPCDet configs name their "
                                "_BASE_CONFIG_ relative to OpenPCDet's tools/ folder: run from there") from None
    cfg.TAG = cfg_file.stem
    cfg.EXP_GROUP_PATH = "/".join(str(cfg_path).split("/")[1:-1])  # as OpenPCDet: drops 'cfgs' and the file
    set_cfgs = [w for key, value in set_pairs(set_cfgs) if not is_quant_key(key) for w in (key, value)]
    if set_cfgs:
        for key in set_cfgs[0::2]:
            check_set_key(cfg, key, cfg_file)
        try:
            pcdet.config.cfg_from_list(list(set_cfgs), cfg)
        except (AssertionError, KeyError, ValueError, TypeError) as err:
            raise InputError(f"--set {' '.join(set_cfgs)}: {err or type(err).__name__}") from None
    return cfg


def set_pairs(set_cfgs: Sequence[str] | None) -> list[tuple[str, str]]:
    """``--set K1 V1 K2 V2 ...`` as ``[(K1, V1), (K2, V2), ...]``."""
    words = list(set_cfgs or [])
    return list(zip(words[0::2], words[1::2], strict=True))


def is_quant_key(key: str) -> bool:
    """Whether a ``--set`` key lies in the quant section (``QUANT.<key>``)."""
    return key.startswith(QUANT_KEY + ".")


def quant_sets(set_cfgs: Sequence[str] | None) -> dict[str, Any]:
    """The ``--set QUANT.<a>.<b> VALUE`` pairs as a nested mapping ``{a: {b: value}}``, each
    value read as YAML (``4``, ``null``, ``[2, 4]``), later pairs over earlier ones."""
    out: dict[str, Any] = {}
    for key, text in set_pairs(set_cfgs):
        if not is_quant_key(key):
            continue
        parts = key.split(".")[1:]
        if not all(parts):
            raise InputError(f"--set {key}: an empty key part")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(f"--set {key} {text}: not a YAML value ({err})".splitlines()[0]) from None
        node = out
        for part in parts[:-1]:  # the sections along the key, made where missing
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def close_keys(name: str, keys: Sequence[str]) -> list[str]:
    """Up to three of ``keys`` close to ``name``, case ignored."""
    lower = {k.lower(): k for k in keys}
    return [lower[k] for k in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]


def check_set_key(cfg: Mapping[str, Any], key: str, cfg_file: Path) -> None:
    """Raises an :class:`InputError` when ``--set KEY`` names no key of ``cfg`` (OpenPCDet's
    ``cfg_from_list`` sets existing keys only): the first missing part and the close keys there."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if not isinstance(node, Mapping):
            raise InputError(f"--set {key}: {where} in {cfg_file} is a value, not a section")
        if part not in node:
            keys = [str(k) for k in node]
            close = [join(where, k) for k in close_keys(part, keys)]
            if close:
                hint = f"; did you mean {', '.join(close)}?"
            elif i == 0 and part == QUANT_KEY:
                hint = f"; the config has no {QUANT_KEY} section: give the quant settings with --quant_cfg"
            else:
                hint = f"; keys there: {', '.join(sorted(keys)) or 'none'}"
            raise InputError(f"--set {key}: {cfg_file} has no key {part!r} "
                             f"{'under ' + where if where else 'at the top level'}{hint}")
        node = node[part]


def quant_section(cfg: Mapping[str, Any], quant_cfg: Path | None,
                  set_cfgs: Sequence[str] | None = None) -> dict[str, Any]:
    """The config's ``QUANT`` section with ``--quant_cfg`` (core schema, or QDrop's layout with the
    section under ``quant:``) merged into it, then the ``--set QUANT.*`` pairs (whether or not
    the YAML has a ``QUANT`` key)."""
    for key in cfg:
        if key != QUANT_KEY and str(key).lower() == QUANT_KEY.lower():
            raise ConfigError(str(key), f"the quant section of an OpenPCDet config is the top-level key "
                              f"{QUANT_KEY!r} (upper case, as OpenPCDet's own keys)", allowed=QUANT_KEY)
    section = cfg.get(QUANT_KEY)
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(QUANT_KEY, "expected a mapping", section)
    return lay_over(merge_quant_section(section, quant_cfg, "--quant_cfg", EXTRA_KEYS), quant_sets(set_cfgs))


def calib_options(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The quant section's ``calib`` key: ``{split: train|test, batch_size, seed, augment}``.

    ``split: train`` reads train frames through the test pipeline (no augmentation, no class
    balancing) unless ``augment: true`` (OpenPCDet's training pipeline, as QDrop's calibration)."""
    data = dict(section or {})
    check_keys(data, CALIB_DEFAULTS.keys(), "calib")
    out = {
        "split": get_choice(data, "split", CALIB_DEFAULTS["split"], "calib", ["train", "test"]),
        "batch_size": get_int(data, "batch_size", CALIB_DEFAULTS["batch_size"], "calib", 1),
        "seed": get_int(data, "seed", CALIB_DEFAULTS["seed"], "calib", 0),
        "augment": get_bool(data, "augment", CALIB_DEFAULTS["augment"], "calib"),
    }
    if out["augment"] and out["split"] != "train":
        raise ConfigError("calib.augment", "augmentation is OpenPCDet's training pipeline: needs split: train",
                          out["augment"])
    return out


def parse_quant(data: Mapping[str, Any]) -> tuple[QuantConfig, dict[str, Any]]:
    """The validated quant config and calibration options."""
    qcfg = QuantConfig.from_dict(data, extra_keys=EXTRA_KEYS)
    return qcfg, calib_options(qcfg.extra.get("calib"))


__all__ = ["CALIB_DEFAULTS", "EXTRA_KEYS", "QUANT_KEY", "calib_options", "load_pcdet_config", "parse_quant",
           "quant_section"]
