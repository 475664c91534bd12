"""Handing freed heap memory back: glibc calls where there is a glibc, nothing elsewhere."""
from __future__ import annotations

import pytest

from rdoq_plugins import memory


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", (pad,)))
        return 1

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", (param, value)))
        return 1


def test_calls_go_to_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: libc)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.release_free_memory() is True
    assert memory.map_large_allocations(1 << 20) is True
    assert libc.calls == [("malloc_trim", (0,)), ("mallopt", (memory.M_MMAP_THRESHOLD, 1 << 20))]


def test_a_users_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: libc)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.map_large_allocations() is False and libc.calls == []


def test_without_glibc_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", lambda: None)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.release_free_memory() is False and memory.map_large_allocations() is False


def test_the_real_library_is_found_or_absent() -> None:
    libc = memory._libc()
    assert libc is None or hasattr(libc, "malloc_trim")
    assert memory.release_free_memory() is (libc is not None)
