"""The ``quant`` section of an mmdet config: the core schema plus mmdet-specific keys.

``--quant-config FILE`` (YAML in the core schema, e.g. QDrop's detection ``exp/config.yaml``, or
QDrop's ImageNet layout with the section under ``quant:``) supplies the section or is merged into it
key by key, overrides by layer name (:mod:`rdoq_plugins.config.load`). Extra keys beside the core
ones:

- ``heads``: ``{rpn_head: bool, roi_head: bool, bbox_head: bool}``; all present heads default on.
- ``calib``: ``{split: train|test, samples_per_gpu: int, seed: int}``.
- ``per_level_act``: bool, default true: the layers of dense heads (RPN, RetinaHead), which every
  FPN level shares, quantize their input with one quantizer (scale) per level
  (:mod:`mmdet_ext.head_levels`). Activation bit allocation (``rdoq.target: act|joint|both``)
  leaves those inputs at their uniform bits, one step per level.
- ``rd_target``: ``scores`` (default) or ``logits``: whether RDOQ's distortion target sees the
  heads' class outputs as scores or as logits (:mod:`mmdet_ext.rd_target`).
- ``hooks``: the hooks to run, e.g. ``[dict(type='QuantCalibHook'), dict(type='QDropReconHook')]``;
  by default calibration, then RD curves and bit allocation when ``rdoq`` is set, then
  reconstruction when ``recon`` is set.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmcv.runner import HOOKS

from mmdet_ext.rd_target import RD_TARGETS
from rdoq_plugins.config import ConfigError, QuantConfig
from rdoq_plugins.config.load import merge_quant_section as merge_quant

EXTRA_KEYS = ("heads", "calib", "hooks", "per_level_act", "rd_target")


def merge_quant_section(section: Mapping[str, Any] | None, quant_config: Path | None) -> dict[str, Any]:
    """The config's ``quant`` section with the YAML file merged into it (mappings key by key,
    ``overrides`` by layer name; see :func:`rdoq_plugins.config.load.merge_quant_section`)."""
    return merge_quant(section, quant_config, "--quant-config", EXTRA_KEYS)


def parse_quant_section(data: Mapping[str, Any]) -> QuantConfig:
    """Validates the whole section, hooks included, before any work starts."""
    qcfg = QuantConfig.from_dict(data, extra_keys=EXTRA_KEYS)
    per_level = qcfg.extra.get("per_level_act", True)
    if not isinstance(per_level, bool):
        raise ConfigError("per_level_act", "expected a boolean", per_level, "true, false")
    qcfg = replace(qcfg, extra={**qcfg.extra, "per_level_act": per_level})
    rd_target = qcfg.extra.get("rd_target", RD_TARGETS[0])
    if rd_target not in RD_TARGETS:
        raise ConfigError("rd_target", "unknown value", rd_target, ", ".join(RD_TARGETS))
    qcfg = replace(qcfg, extra={**qcfg.extra, "rd_target": rd_target})
    hooks = hook_configs(qcfg)
    for i, hook in enumerate(hooks):
        if not isinstance(hook, Mapping) or "type" not in hook:
            raise ConfigError(f"hooks[{i}]", "expected dict(type=..., ...)", hook)
        if HOOKS.get(hook["type"]) is None:
            quant_hooks = sorted(n for n in HOOKS.module_dict if n.startswith(("Quant", "QDrop", "RDOQ")))
            raise ConfigError(f"hooks[{i}].type", "not in mmcv's HOOKS registry", hook["type"], ", ".join(quant_hooks))
        args = {k: v for k, v in hook.items() if k != "type"}
        try:  # a hook checks its own arguments when built
            HOOKS.get(hook["type"])(**args)
        except TypeError as err:
            raise ConfigError(f"hooks[{i}]", f"bad arguments for {hook['type']} ({err})", args) from None
    types = {h["type"] for h in hooks}
    if "QDropReconHook" in types and qcfg.recon is None:
        raise ConfigError("recon", "QDropReconHook is listed but recon is null", None, "a recon section")
    for hook in ("RDCurvesHook", "BitAllocHook"):
        if hook in types and qcfg.rdoq is None:
            raise ConfigError("rdoq", f"{hook} is listed but there is no rdoq section", None, "an rdoq section")
    if "BitAllocHook" in types and "RDCurvesHook" not in types:
        raise ConfigError("hooks", "BitAllocHook needs RDCurvesHook in the same list", sorted(types))
    return qcfg


def hook_configs(qcfg: QuantConfig) -> list[dict[str, Any]]:
    """The hooks to build: the section's ``hooks``, or calibration (+ reconstruction)."""
    if "hooks" in qcfg.extra:
        hooks = qcfg.extra["hooks"]
        if not isinstance(hooks, list):
            raise ConfigError("hooks", "expected a list", hooks)
        return [dict(h) if isinstance(h, Mapping) else h for h in hooks]
    default = [{"type": "QuantCalibHook"}]
    if qcfg.rdoq is not None:
        default += [{"type": "RDCurvesHook"}, {"type": "BitAllocHook"}]
    if qcfg.recon is not None:
        default.append({"type": "QDropReconHook"})
    return default
