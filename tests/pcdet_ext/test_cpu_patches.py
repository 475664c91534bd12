"""spconv on CPU: both failures reproduced without the patches, gone with them (in a fresh process)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("spconv.pytorch")

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the patches apply without CUDA only")

SCRIPT = textwrap.dedent(
    """
    import io, json, logging
    import torch
    import spconv.pytorch as spconv
    from cumm import tensorview as tv
    from spconv.pytorch import hash as sp_hash, ops
    from spconv.pytorch.conv import SparseConvolution

    import pcdet_ext  # importing patches nothing

    torch.manual_seed(0)
    indices = torch.tensor([[0, 1, 1, 1], [0, 2, 3, 1], [0, 2, 2, 1], [1, 0, 0, 0]], dtype=torch.int32)
    x = spconv.SparseConvTensor(torch.randn(4, 4), indices, [4, 4, 4], 2)
    conv = spconv.SubMConv3d(4, 6, 3, padding=1, bias=True)
    fused = SparseConvolution(3, 4, 6, 3, padding=1, subm=True, bias=True, act_type=tv.gemm.Activation.ReLU)
    fused.load_state_dict(conv.state_dict())

    def eval_forward():
        return conv.eval()(x).features

    def fused_forward():
        return fused.eval()(x).features

    def backward():
        features = x.features.clone().requires_grad_(True)
        conv.train()(x.replace_feature(features)).features.square().sum().backward()
        return features.grad

    def attempt(fn):
        try:
            fn()
            return "ok"
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"

    out = {"before": {f.__name__: attempt(f) for f in (eval_forward, fused_forward, backward)}}
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("pcdet_ext").addHandler(handler)
    logging.getLogger("pcdet_ext").setLevel(logging.INFO)
    out["first"] = pcdet_ext.apply_cpu_patches()
    wrapped = ops.indice_conv
    out["second"] = pcdet_ext.apply_cpu_patches()
    out["log_lines"] = log.getvalue().strip().splitlines()
    out["wrapped_once"] = ops.indice_conv is wrapped and not hasattr(wrapped.__wrapped__, "_pcdet_ext_cpu_patch")
    out["streams"] = [ops.get_current_stream(), sp_hash.get_current_stream()]
    out["after"] = {f.__name__: attempt(f) for f in (eval_forward, fused_forward, backward)}
    train_out = conv.train()(x).features.detach()  # bias added outside the kernel by spconv itself
    out["eval_matches_train"] = bool(torch.allclose(eval_forward(), train_out, atol=1e-6))
    out["fused_is_relu"] = bool(torch.allclose(fused_forward(), train_out.relu(), atol=1e-6))
    out["grad_nonzero"] = bool(backward().abs().sum() > 0)
    print(json.dumps(out))
    """
)


def test_patches_fix_both_cpu_failures_and_are_idempotent() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    before = out["before"]
    assert "cpu don't support act and bias" in before["eval_forward"]
    assert "cpu don't support act and bias" in before["fused_forward"]
    assert "NVIDIA" in before["backward"] or "CUDA" in before["backward"]  # torch.cuda.current_stream()
    assert out["after"] == {"eval_forward": "ok", "fused_forward": "ok", "backward": "ok"}
    assert len(out["first"]) == 3 and out["second"] == out["first"]
    assert len(out["log_lines"]) == 1 and "spconv" in out["log_lines"][0]
    assert out["wrapped_once"] and out["streams"] == [0, 0]
    assert out["eval_matches_train"] and out["fused_is_relu"] and out["grad_nonzero"]


def test_sparse_conv_with_two_threads_matches_dense_reference_every_time() -> None:
    """spconv's CPU scatter-add, unpatched, is still reading its buffer when it returns: on more
    than one thread, repeated convs then differ from each other and from the dense result."""
    import spconv.pytorch as spconv
    from torch.nn import functional as F

    import pcdet_ext

    pcdet_ext.apply_cpu_patches()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(0)
        shape = (12, 60, 60)
        flat = torch.randperm(12 * 60 * 60, generator=gen)[:15000]
        coords = torch.stack(torch.unravel_index(flat, shape), dim=1)
        indices = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], dim=1).int()
        x = spconv.SparseConvTensor(torch.randn(len(indices), 8, generator=gen), indices, list(shape), 1)
        conv = spconv.SubMConv3d(8, 8, 3, padding=1, bias=False).eval()
        ref = F.conv3d(x.dense(), conv.weight.permute(0, 4, 1, 2, 3), padding=1)
        idx = indices.long()
        ref = ref.permute(0, 2, 3, 4, 1)[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]]
        with torch.no_grad():
            for _ in range(6):
                y = conv(spconv.SparseConvTensor(x.features, indices, list(shape), 1)).features
                torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)
