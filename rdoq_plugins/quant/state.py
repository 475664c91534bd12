"""State-dict loading for quantizers whose buffers change shape (per-group bits, AdaRound α).

A quantizer built with per-tensor defaults must load a state dict saved after RDOQ regrouped it or
after AdaRound created its rounding variables. :class:`ResizeOnLoad` resizes the module's own
buffers and parameters to the saved shapes before the copy, and restores the granularity from its
``granularity_code`` buffer, so ``load_state_dict`` round-trips exactly.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rdoq_plugins.granularity import decode


class ResizeOnLoad(nn.Module):
    """Mixin: ``_load_from_state_dict`` adopts the saved shapes of local buffers and parameters."""

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name, param in list(self._parameters.items()):
            saved = state_dict.get(prefix + name)
            if param is not None and saved is not None and saved.shape != param.shape:
                new = torch.empty(saved.shape, dtype=param.dtype, device=param.device)
                self._parameters[name] = nn.Parameter(new, requires_grad=param.requires_grad)
        for name, buf in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if buf is not None and saved is not None and saved.shape != buf.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=buf.dtype, device=buf.device)
        code = state_dict.get(prefix + "granularity_code")
        if code is not None and hasattr(self, "granularity"):
            self.granularity = decode(code)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
