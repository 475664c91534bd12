"""Stable short hashes of settings."""
from __future__ import annotations

from pathlib import Path

from rdoq_plugins.hashing import content_hash, run_hash


def test_content_hash_is_stable_and_sensitive() -> None:
    cfg = {"weight_bits": [2, 4], "kappa": 0.0, "target": "weight"}
    h = content_hash(cfg, "ckpt.pth", 16)
    assert len(h) == 12 and int(h, 16) >= 0
    assert content_hash({"target": "weight", "kappa": 0.0, "weight_bits": [2, 4]}, "ckpt.pth", 16) == h  # key order
    assert content_hash(cfg, Path("ckpt.pth"), 16) == h  # a path hashes as its text
    changed = [content_hash({**cfg, "kappa": 1e-7}, "ckpt.pth", 16), content_hash({**cfg, "weight_bits": [4, 2]}, "ckpt.pth", 16),
               content_hash(cfg, "other.pth", 16), content_hash(cfg, "ckpt.pth", 32), content_hash(cfg, "ckpt.pth")]
    assert len({h, *changed}) == len(changed) + 1



def test_run_hash_is_a_longer_sha1() -> None:
    assert len(run_hash({"a": 1})) == 16 and run_hash({"a": 1}) != run_hash({"a": 2})
    assert run_hash({"a": 1}) == content_hash({"a": 1}, algorithm="sha1", length=16)
