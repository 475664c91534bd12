"""Runtime patches that let spconv 2.3.8 (CPU build) run forward and backward without CUDA.

Three failures, read from the installed spconv sources (the third also measured):

* **Backward asks CUDA for a stream.** ``spconv.pytorch.cppcore.get_current_stream`` returns
  ``torch.cuda.current_stream().cuda_stream``; ``spconv.pytorch.ops`` (and ``hash``, ``utils`` and
  the quantization modules) import it *by name*, and ``ops.indice_conv_backward`` calls it for CPU
  tensors too, so ``loss.backward()`` through a sparse conv raises "Found no NVIDIA driver".
  The patch makes it return stream 0 in ``cppcore`` and in every loaded spconv module that holds
  the original by name (modules imported later pick the patched one up from ``cppcore``).
* **Fused bias / activation in eval mode** (spconv issue #719). In eval mode
  ``SparseConvolutionBase._conv_forward`` hands the bias (and a fused activation) to the kernel.
  A CPU-only build has no C++ GEMM (``GEMM_CPP is None``), so ``ops.indice_conv`` takes its Python
  gather-matmul-scatter path, which asserts ``features.is_cuda, "cpu don't support act and bias"``.
  The patch wraps ``spconv.pytorch.ops.indice_conv`` (``functional.py`` calls it as
  ``ops.indice_conv``): for CPU features it runs the kernel without bias and activation, then adds
  the bias and applies the activation itself. CUDA tensors go to the original untouched.
* **The CPU gather / scatter-add kernels race with torch's threads.** That Python path runs
  ``SpconvOps.gather_cpu`` -> ``torch.mm`` -> ``SpconvOps.scatter_add_cpu`` per kernel offset,
  reusing one buffer. With more than one torch intra-op thread, ``scatter_add_cpu`` is still
  reading its source buffer after it returns (overwriting the source right after the call
  corrupts the result: tens of rows out of 6000 on 2 threads, none on 1), so the next offset's
  ``torch.mm`` corrupts the previous offset's contribution and sparse convs (forward and
  backward) return slightly different, wrong features from call to call. The patch gives
  ``spconv.pytorch.ops`` a ``SpconvOps`` whose ``gather_cpu`` / ``scatter_add_cpu`` run as torch
  ``index_select`` / ``index_add_`` on the same memory; every other member is spconv's own.

Once ``pcdet`` is imported, the real OpenPCDet is patched too
(:mod:`pcdet_ext.openpcdet_cpu`: its ``.cuda()`` calls and its rotated IoU / NMS).

Nothing is patched while ``torch.cuda.is_available()``.
"""
from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

logger = logging.getLogger("pcdet_ext")

_MARK = "_pcdet_ext_cpu_patch"
STREAM_PATCH = "spconv.get_current_stream -> 0"
BIAS_ACT_PATCH = "spconv.ops.indice_conv: bias/act outside the CPU kernel"
GATHER_SCATTER_PATCH = "spconv.ops.SpconvOps.gather_cpu/scatter_add_cpu -> torch"


def _cpu_stream() -> int:
    """Stream 0: what spconv itself passes for CPU tensors."""
    return 0


setattr(_cpu_stream, _MARK, True)


def _patch_stream() -> bool:
    from spconv.pytorch import cppcore

    original = cppcore.get_current_stream
    if getattr(original, _MARK, False):
        return False
    for name, module in list(sys.modules.items()):
        if (name == "spconv" or name.startswith("spconv.")) and getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = _cpu_stream  # type: ignore[attr-defined]
    cppcore.get_current_stream = _cpu_stream  # type: ignore[assignment]
    return True


def _apply_act(x: torch.Tensor, act_type: Any, alpha: Any) -> torch.Tensor:
    from cumm import tensorview as tv

    act = tv.gemm.Activation
    if act_type == act.None_:
        return x
    if act_type == act.ReLU:
        return F.relu(x)
    if act_type == act.Sigmoid:
        return torch.sigmoid(x)
    if act_type == act.LeakyReLU:
        return F.leaky_relu(x, float(alpha))
    raise NotImplementedError(f"fused activation {act_type} on CPU")


def _bias_act_outside(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    from cumm import tensorview as tv

    signature = inspect.signature(original)
    none = tv.gemm.Activation.None_

    @functools.wraps(original)
    def indice_conv(*args: Any, **kwargs: Any) -> torch.Tensor:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        bias, act_type = arguments["bias"], arguments["act_type"]
        if arguments["features"].is_cuda or (bias is None and act_type == none):
            return original(*args, **kwargs)
        arguments["bias"] = None
        arguments["act_type"] = none
        out = original(*bound.args, **bound.kwargs)
        if bias is not None:
            out = out + bias
        return _apply_act(out, act_type, arguments["act_alpha"])

    setattr(indice_conv, _MARK, True)
    return indice_conv


def _patch_bias_act() -> bool:
    from spconv.pytorch import ops

    if getattr(ops.indice_conv, _MARK, False):
        return False
    ops.indice_conv = _bias_act_outside(ops.indice_conv)  # type: ignore[assignment]
    return True


def _as_torch(t: Any) -> torch.Tensor:
    """A torch view of a CPU ``tv.Tensor`` (same memory)."""
    return torch.from_numpy(t.numpy_view())


class _TorchGatherScatter:
    """spconv's ``SpconvOps`` with the CPU gather / scatter-add done synchronously by torch."""

    def __init__(self, ops: Any) -> None:
        self._spconv_ops = ops
        setattr(self, _MARK, True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spconv_ops, name)

    @staticmethod
    def gather_cpu(out: Any, inp: Any, inds: Any) -> None:
        """``out[j] = inp[inds[j]]`` for ``j < len(inds)``."""
        idx = _as_torch(inds).long()
        dst = _as_torch(out)[: len(idx)]
        torch.index_select(_as_torch(inp), 0, idx, out=dst)

    @staticmethod
    def scatter_add_cpu(out: Any, inp: Any, inds: Any) -> None:
        """``out[inds[j]] += inp[j]`` for ``j < len(inds)``."""
        idx = _as_torch(inds).long()
        _as_torch(out).index_add_(0, idx, _as_torch(inp)[: len(idx)])


def _patch_gather_scatter() -> bool:
    from spconv.pytorch import ops

    if getattr(ops.SpconvOps, _MARK, False):
        return False
    ops.SpconvOps = _TorchGatherScatter(ops.SpconvOps)  # type: ignore[assignment]
    return True


def cpu_patches_applied() -> list[str]:
    """The patches now in effect."""
    from spconv.pytorch import cppcore, ops

    applied = []
    if getattr(cppcore.get_current_stream, _MARK, False):
        applied.append(STREAM_PATCH)
    if getattr(ops.indice_conv, _MARK, False):
        applied.append(BIAS_ACT_PATCH)
    if getattr(ops.SpconvOps, _MARK, False):
        applied.append(GATHER_SCATTER_PATCH)
    return applied


def apply_cpu_patches() -> list[str]:
    """Patches spconv, and OpenPCDet when ``pcdet`` is imported, for CPU-only runs (no-op with
    CUDA); idempotent.

    Returns:
        The names of the patches in effect (empty when CUDA is available).
    """
    if torch.cuda.is_available():
        return []
    patches = ((STREAM_PATCH, _patch_stream), (BIAS_ACT_PATCH, _patch_bias_act),
               (GATHER_SCATTER_PATCH, _patch_gather_scatter))
    new = [name for name, patch in patches if patch()]
    if new:
        logger.info("no CUDA: patched spconv for CPU (%s)", "; ".join(new))
    from pcdet_ext.openpcdet_cpu import apply_openpcdet_cpu_patches

    return cpu_patches_applied() + apply_openpcdet_cpu_patches()
