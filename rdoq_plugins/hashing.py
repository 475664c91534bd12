"""Short stable hashes of settings: what keys stored RD curves and resumable run states."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(*parts: Any, algorithm: str = "sha256", length: int = 12) -> str:
    """A short stable hash of JSON-able parts (configs, checkpoint identity, data settings); key
    order does not matter and other objects hash as their text."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.new(algorithm, text.encode()).hexdigest()[:length]


def run_hash(*parts: Any) -> str:
    """The identity of one quantization run (quant config, calibration, model, checkpoint, world
    size): a saved run state resumes only into a run with the same hash."""
    return content_hash(*parts, algorithm="sha1", length=16)
