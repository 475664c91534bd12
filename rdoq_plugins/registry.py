"""A small name -> class registry that fails early and specifically.

An adapter may mirror these entries into a framework's own registries; the core never imports a
framework, so it keeps its own.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name; the message names the registry and close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead.
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps names to classes (or factories).

    Args:
        name: what the registry holds, used in error messages (e.g. ``"quantizer"``).

    Example:
        >>> QUANTIZERS = Registry("quantizer")
        >>> @QUANTIZERS.register("LSQFakeQuantize")
        ... class LSQFakeQuantize: ...
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None, *, force: bool = False) -> Callable[[T], T]:
        """Decorator that adds an entry under ``name`` (default: the object's ``__name__``)."""

        def add(obj: T) -> T:
            key = name or obj.__name__
            if key in self._entries and not force and self._entries[key] is not obj:
                raise RegistryError(f"{key!r} is already registered in the {self.name} registry")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Returns the entry for ``name``; an unknown name lists the closest matches."""
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: Any) -> str:
        """The error text for an unknown ``name``: the registry, close matches, all entries."""
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"{name!r} is not in the {self.name} registry.{hint} "
            f"Registered: {', '.join(sorted(self._entries))}."
        )

    def build(self, name: str, **kwargs: Any) -> Any:
        """Looks ``name`` up and calls it with ``kwargs``."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """All (name, entry) pairs, sorted by name."""
        return sorted(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {sorted(self._entries)})"


QUANTIZERS: Registry[Any] = Registry("quantizer")
OBSERVERS: Registry[Any] = Registry("observer")
RECONSTRUCTORS: Registry[Any] = Registry("reconstructor")
ALLOCATORS: Registry[Any] = Registry("bit allocator")
