"""Packing integers at a per-unit bit width into one little-endian bit stream (numpy only).

Every value ``v`` of a unit with ``b`` bits is stored as ``v - q_min`` in exactly ``b`` bits, least
significant bit first; units follow each other with no padding, and the stream is padded to a whole
byte only at its end. A unit with 0 bits takes no space.
"""
from __future__ import annotations

import numpy as np


def pack_codes(codes: list[np.ndarray], bits: list[int]) -> bytes:
    """``codes[i]`` (non-negative integers below ``2**bits[i]``) packed at ``bits[i]`` bits each."""
    streams = []
    for values, b in zip(codes, bits):
        if b == 0 or values.size == 0:
            continue
        v = values.astype(np.uint32).ravel()
        if int(v.max(initial=0)) >> b:
            raise ValueError(f"a code does not fit in {b} bits")
        streams.append(((v[:, None] >> np.arange(b, dtype=np.uint32)) & 1).astype(np.uint8).ravel())
    if not streams:
        return b""
    return np.packbits(np.concatenate(streams), bitorder="little").tobytes()


def unpack_codes(blob: bytes, counts: list[int], bits: list[int]) -> list[np.ndarray]:
    """Inverse of :func:`pack_codes`: ``counts[i]`` values of ``bits[i]`` bits each (int64)."""
    stream = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), bitorder="little")
    need = sum(n * b for n, b in zip(counts, bits))
    if stream.size < need or stream.size - need >= 8:
        raise ValueError(f"bit stream of {stream.size} bits does not hold the {need} bits described")
    out, pos = [], 0
    for n, b in zip(counts, bits):
        chunk = stream[pos:pos + n * b].reshape(n, b).astype(np.int64)
        out.append(chunk @ (np.int64(1) << np.arange(b, dtype=np.int64)) if b else np.zeros(n, np.int64))
        pos += n * b
    return out
