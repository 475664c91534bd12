"""weights.packed: integers equal to the fake-quantized weights, bit-exact rebuild, size as counted."""
from __future__ import annotations

import copy
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from rdoq_plugins.export import (
    deployed_state_dict,
    dequantize,
    load_packed,
    read_header,
    weight_integers,
    write_packed,
)
from rdoq_plugins.export.bitpack import pack_codes, unpack_codes
from rdoq_plugins.footprint import size_bytes
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from tests.core.export.toy import toy_model


def test_bitpack_round_trip_at_mixed_widths() -> None:
    rng = np.random.default_rng(0)
    bits = [2, 0, 3, 8, 5, 16, 1]
    codes = [rng.integers(0, 2**b, size=n) if b else np.zeros(n, np.int64) for b, n in zip(bits, [5, 4, 7, 3, 9, 2, 1])]
    blob = pack_codes(codes, bits)
    assert len(blob) == -(-sum(c.size * b for c, b in zip(codes, bits)) // 8)
    back = unpack_codes(blob, [c.size for c in codes], bits)
    assert all(np.array_equal(a, b if bb else np.zeros_like(b)) for a, b, bb in zip(back, codes, bits))
    with pytest.raises(ValueError):
        pack_codes([np.array([4])], [2])


def test_integers_dequantize_to_the_fake_quantized_weight() -> None:
    model, _ = toy_model()
    for layer in (model.conv1, model.conv2, model.conv3, model.fc):
        ints = weight_integers(layer.weight_quantizer, layer.weight)
        lo, hi = ints.params.bounds()
        assert torch.equal(dequantize(ints), layer.quantized_weight())
        rows = ints.q.movedim(0, 0).reshape(ints.q.shape[0], -1)
        assert int(rows.min()) >= int(lo.min()) and int(rows.max()) <= int(hi.max())
    pruned = weight_integers(model.conv2.weight_quantizer, model.conv2.weight).q[20:]
    assert pruned.abs().sum() == 0  # the 0-bit group


def test_pack_load_rebuilds_the_model_bit_exactly(tmp_path: Path) -> None:
    model, x = toy_model()
    with torch.no_grad():
        expected = model(x)
    info = write_packed(model, tmp_path / "weights.packed", {"note": "toy"})
    fresh, _ = toy_model(seed=1)  # same structure, other weights and steps
    meta = load_packed(fresh, tmp_path / "weights.packed")
    assert meta == {"note": "toy"}
    a, b = deployed_state_dict(model), deployed_state_dict(fresh)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
    # Size: footprint.py counts the weights at their bits, 9 bytes per weight and activation unit and
    # FP32 others; the file adds its header, per quantizer its switches, granularity code and drop
    # probability (9 bytes), and per packed layer at most one byte of padding.
    predicted = size_bytes(model)["quant"]
    quantizers = sum(1 for m in model.modules() if isinstance(m, FakeQuantize))
    assert predicted <= info["bytes"] - info["header_bytes"] <= predicted + 9 * quantizers + 4
    header, _ = read_header(tmp_path / "weights.packed")
    packed = [e for e in header["entries"] if e.get("packed")]
    assert len(packed) == 4 and sum(e["nbytes"] for e in packed) <= info["weight_bits"] / 8 + len(packed)
    assert header["format"] == "rdoq-plugins/packed/v2" and info["header_bytes"] < 600


def test_a_version_1_file_still_loads(tmp_path: Path) -> None:
    model, _ = toy_model()
    write_packed(model, tmp_path / "v2.packed")
    header, data = read_header(tmp_path / "v2.packed")
    v1 = zlib.compress(json.dumps({"format": "rdoq-plugins/packed/v1", "meta": {}, "entries": header["entries"]}).encode())
    (tmp_path / "v1.packed").write_bytes(b"RDOQPK01" + struct.pack("<Q", len(v1)) + v1 + bytes(data))
    fresh, _ = toy_model(seed=1)
    load_packed(fresh, tmp_path / "v1.packed")
    a, b = deployed_state_dict(model), deployed_state_dict(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_changed_integer_changes_the_model(tmp_path: Path) -> None:
    model, _ = toy_model()
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.conv1.weight.add_(other.conv1.weight_quantizer.scale[:, None, None, None] * 1.0)
    write_packed(other, tmp_path / "o.packed")
    fresh, _ = toy_model(seed=2)
    load_packed(fresh, tmp_path / "o.packed")
    assert not torch.equal(deployed_state_dict(fresh)["conv1.weight"], deployed_state_dict(model)["conv1.weight"])
