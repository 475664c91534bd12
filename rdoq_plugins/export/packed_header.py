"""The header of ``weights.packed``: what each data entry is, in a few hundred bytes to a few kB.

Version 2 (magic ``RDOQPK02``) stores the entries column by column in a zlib-compressed JSON object:
``keys`` front-coded (``[length of the prefix shared with the previous key, rest]``), ``shapes``,
``dtypes`` (torch), ``stores`` (the numpy type of a raw entry, null for a bit-packed weight) and
``packed_nbytes`` (the byte length of each bit-packed weight, in order). Entries follow each other in
the data section, so offsets are running sums and a raw entry's length is its element count times
its store's item size. Version 1 (``RDOQPK01``, a JSON list of entries with their byte ranges) is
still read.
"""
from __future__ import annotations

import json
import math
import zlib
from typing import Any

import numpy as np

MAGIC_V1 = b"RDOQPK01"
MAGIC = b"RDOQPK02"
FORMAT_V1 = "rdoq-plugins/packed/v1"
FORMAT = "rdoq-plugins/packed/v2"


def _front_code(keys: list[str]) -> list[list[Any]]:
    out, prev = [], ""
    for key in keys:
        n = 0
        while n < min(len(key), len(prev)) and key[n] == prev[n]:
            n += 1
        out.append([n, key[n:]])
        prev = key
    return out


def _front_decode(coded: list[list[Any]]) -> list[str]:
    keys, prev = [], ""
    for n, rest in coded:
        prev = prev[:n] + rest
        keys.append(prev)
    return keys


def encode_header(entries: list[dict[str, Any]], meta: dict[str, Any]) -> bytes:
    """Compressed header of ``entries`` (``key, shape, dtype, store`` or ``packed`` + ``nbytes``, in data order)."""
    body = {"format": FORMAT, "meta": meta,
            "keys": _front_code([e["key"] for e in entries]),
            "shapes": [e["shape"] for e in entries],
            "dtypes": [e.get("dtype") for e in entries],
            "stores": [None if e.get("packed") else e["store"] for e in entries],
            "packed_nbytes": [e["nbytes"] for e in entries if e.get("packed")]}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)


def decode_header(magic: bytes, blob: bytes) -> dict[str, Any]:
    """``{"format", "meta", "entries"}``, each entry with its ``offset`` and ``nbytes`` in the data."""
    body = json.loads(zlib.decompress(blob))
    if magic == MAGIC_V1 and body.get("format") == FORMAT_V1:
        return body
    if magic != MAGIC or body.get("format") != FORMAT:
        raise ValueError(f"format {body.get('format')!r}, expected {FORMAT}")
    packed = iter(body["packed_nbytes"])
    entries, offset = [], 0
    for key, shape, dtype, store in zip(_front_decode(body["keys"]), body["shapes"], body["dtypes"], body["stores"]):
        if store is None:
            entry = {"key": key, "packed": True, "shape": shape, "nbytes": next(packed)}
        else:
            entry = {"key": key, "dtype": dtype, "store": store, "shape": shape,
                     "nbytes": math.prod(shape) * np.dtype(store).itemsize}
        entry["offset"] = offset
        offset += entry["nbytes"]
        entries.append(entry)
    return {"format": FORMAT, "meta": body["meta"], "entries": entries}
