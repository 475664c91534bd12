"""Config errors that name the key, the value given and what is allowed."""
from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any


class ConfigError(ValueError):
    """A quantization config value or key that cannot be used.

    The message reads ``quant config: <key>: <problem>; got <value>; allowed: <values>``.
    """

    def __init__(self, key: str, problem: str, value: Any = ..., allowed: str | None = None) -> None:
        self.key = key
        text = f"quant config: {key}: {problem}"
        if value is not ...:
            text += f"; got {value!r}"
        if allowed:
            text += f"; allowed: {allowed}"
        super().__init__(text)


def join(path: str, key: str) -> str:
    """``'recon' + 'iters' -> 'recon.iters'``."""
    return f"{path}.{key}" if path else key


def check_keys(data: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    """Raises on the first key of ``data`` that is not ``allowed``, suggesting close matches."""
    if not isinstance(data, Mapping):
        raise ConfigError(path or "<root>", "expected a mapping", data)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(join(path, str(key)), f"unknown key{hint}", allowed=", ".join(sorted(allowed)))


def get_bool(data: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(join(path, key), "expected a boolean", value, "true, false")
    return value


def get_int(data: Mapping[str, Any], key: str, default: int | None, path: str, lo: int, hi: int | None = None) -> int:
    value = data.get(key, default)
    allowed = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(join(path, key), "expected an integer", value, allowed)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(join(path, key), "out of range", value, allowed)
    return value


def get_float(
    data: Mapping[str, Any], key: str, default: float, path: str, lo: float, hi: float | None = None,
    lo_open: bool = False, hi_open: bool = False,
) -> float:
    value = data.get(key, default)
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    allowed = f"a number in {left}{lo}, {hi if hi is not None else 'inf'}{right}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(join(path, key), "expected a number", value, allowed)
    value = float(value)
    too_low = value <= lo if lo_open else value < lo
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise ConfigError(join(path, key), "out of range", value, allowed)
    return value


def get_choice(data: Mapping[str, Any], key: str, default: str, path: str, choices: Collection[str]) -> str:
    value = data.get(key, default)
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(join(path, key), f"unknown value{hint}", value, ", ".join(sorted(choices)))
    return str(value)
