"""The quantization config: QDrop's ``exp/config.yaml`` keys, plus per-layer overrides.

Every value is checked when the config is read, before any work starts; a bad key or value raises
:class:`~rdoq_plugins.config.errors.ConfigError` naming the key, the value and what is allowed.

Example (YAML)::

    a_qconfig: {quantizer: LSQFakeQuantize, observer: AvgMSEFastObserver, bit: 4,
                symmetric: false, ch_axis: -1}
    w_qconfig: {quantizer: AdaRoundFakeQuantize, observer: MSEObserver, bit: 4,
                symmetric: false, ch_axis: 0}
    calibrate: 256
    recon: {iters: 20000, batch_size: 2, scale_lr: 4.0e-5, warm_up: 0.2, weight: 0.01,
            b_range: [20, 2], keep_gpu: true, round_mode: learned_hard_sigmoid, drop_prob: 0.5}
    overrides:
      backbone.conv1: {w_qconfig: {bit: 8}}   # exact module name
      're:.*fc_cls': null                      # regex; null leaves the layer FP
"""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import rdoq_plugins.observers  # noqa: F401  (fills the observer registry)
import rdoq_plugins.quant  # noqa: F401  (fills the quantizer registry)
from rdoq_plugins.config.errors import (
    ConfigError,
    check_keys,
    get_bool,
    get_choice,
    get_float,
    get_int,
    join,
)
from rdoq_plugins.config.placement import Placement, read_position
from rdoq_plugins.config.rdoq import RDOQConfig, Target
from rdoq_plugins.granularity import Granularity, PerChannel, PerGroup, PerTensor
from rdoq_plugins.quant.adaround import RoundMode
from rdoq_plugins.quant.qdrop import MixRule
from rdoq_plugins.quant.uniform import MAX_BITS
from rdoq_plugins.registry import OBSERVERS, QUANTIZERS

# The schema's version, stored with every saved config: 2 writes every key (1 left the recon keys
# exclude and bias_lr out at their defaults); 3 changed the default recon.mix to element (a stored
# config of version 1 or 2 without the key mixed twice). A stored config of any version reads back.
CONFIG_VERSION = 3

# The keys of the quant section itself; adapters add keys of their own (``extra_keys``).
CORE_KEYS = ("w_qconfig", "a_qconfig", "calibrate", "recon", "overrides", "rdoq", "version")


@dataclass(frozen=True)
class QuantizerConfig:
    """One quantizer: ``{quantizer, observer, bit, symmetric, ch_axis}`` (+ ``group_size``).

    ``ch_axis: -1`` means per tensor (QDrop's convention); ``group_size`` groups ``ch_axis``'s
    channels into RDOQ channel groups. ``position`` (top-level ``a_qconfig`` only; None for weights):
    where activations are quantized (:class:`~rdoq_plugins.config.placement.Placement`).
    """

    quantizer: str
    observer: str
    bit: int
    symmetric: bool = False
    ch_axis: int = -1
    group_size: int | None = None
    position: Placement | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str, base: QuantizerConfig, weight: bool) -> QuantizerConfig:
        check_keys(data, [f for f in cls.__dataclass_fields__], path)
        quantizer = get_choice(data, "quantizer", base.quantizer, path, list(QUANTIZERS))
        if not weight and QUANTIZERS.get(quantizer).weight_only:
            allowed = ", ".join(n for n, c in QUANTIZERS.items() if not c.weight_only)
            raise ConfigError(join(path, "quantizer"), "quantizes weights only", quantizer, allowed)
        group_size = base.group_size
        if data.get("group_size") is not None:
            group_size = get_int(data, "group_size", None, path, 1)
        ch_axis = get_int(data, "ch_axis", base.ch_axis, path, -1, 7)
        if group_size is not None and ch_axis < 0:
            raise ConfigError(join(path, "group_size"), "needs a channel axis (ch_axis >= 0)", group_size)
        return cls(
            quantizer=quantizer,
            observer=get_choice(data, "observer", base.observer, path, list(OBSERVERS)),
            bit=get_int(data, "bit", base.bit, path, 1, MAX_BITS),
            symmetric=get_bool(data, "symmetric", base.symmetric, path),
            ch_axis=ch_axis,
            group_size=group_size,
            position=read_position(data, path, base.position, weight),
        )

    @property
    def granularity(self) -> Granularity:
        if self.ch_axis < 0:
            return PerTensor()
        if self.group_size is not None:
            return PerGroup(self.ch_axis, self.group_size)
        return PerChannel(self.ch_axis)


# Weights: the 1-D ratio search. The official 2-D search (GridMSEObserver, the QDrop presets' choice)
# costs 100 x (levels + 1) passes over every weight: ~20x this one at 4 bits, ~600x at 8 bits on CPU.
DEFAULT_W = QuantizerConfig("AdaRoundFakeQuantize", "MSEObserver", 4, False, 0)
DEFAULT_A = QuantizerConfig("LSQFakeQuantize", "AvgMSEFastObserver", 4, False, -1, position=Placement.INPUT)



@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop a unit's reconstruction when the loss, averaged over ``window`` iterations, improved by
    less than ``min_rel_improvement`` (relative) over the previous window."""

    window: int = 500
    min_rel_improvement: float = 0.01

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> EarlyStopConfig:
        check_keys(data, ["window", "min_rel_improvement"], path)
        return cls(
            window=get_int(data, "window", cls.window, path, 1),
            min_rel_improvement=get_float(data, "min_rel_improvement", cls.min_rel_improvement, path, 0.0, 1.0),
        )


@dataclass(frozen=True)
class ReconConfig:
    """Block reconstruction (QDrop / BRECQ): the ``recon`` section.

    ``drop_prob`` is QDrop's name for the probability of *keeping* the quantized activation.
    ``batch_size`` images are drawn from the cache per step (the official code ignores it).
    ``exclude``: regular expressions (full match) of unit names that are not reconstructed; their
    weights round to nearest and their activation steps stay as calibrated.
    ``bias_lr``: Adam learning rate of the unit's layer biases; 0 (QDrop's setting) keeps them fixed.
    Learning them is bias correction (Nagel et al., ICCV 2019) inside the reconstruction: integer
    kernels keep biases in 32 bits, so a learned bias costs nothing at deployment.
    ``mix``: how the unit's input mixes the quantized and the FP path
    (:class:`~rdoq_plugins.quant.qdrop.MixRule`).
    """

    iters: int = 20000
    batch_size: int = 2
    scale_lr: float = 4e-5
    lr: float = 1e-3
    warm_up: float = 0.2
    weight: float = 0.01
    b_range: tuple[float, float] = (20.0, 2.0)
    keep_gpu: bool = True
    round_mode: RoundMode = RoundMode.LEARNED_HARD_SIGMOID
    drop_prob: float = 0.5
    early_stop: EarlyStopConfig | None = None
    exclude: tuple[str, ...] = ()
    bias_lr: float = 0.0
    mix: MixRule = MixRule.ELEMENT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> ReconConfig:
        check_keys(data, [f for f in cls.__dataclass_fields__], path)
        b_range = data.get("b_range", list(cls.b_range))
        if (
            not isinstance(b_range, (list, tuple))
            or len(b_range) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in b_range)
            or not b_range[0] >= b_range[1] > 0
        ):
            raise ConfigError(join(path, "b_range"), "invalid", b_range, "[start, end] with start >= end > 0")
        early = data.get("early_stop")
        mode = get_choice(data, "round_mode", cls.round_mode.value, path, [m.value for m in RoundMode])
        return cls(
            iters=get_int(data, "iters", cls.iters, path, 0),
            batch_size=get_int(data, "batch_size", cls.batch_size, path, 1),
            scale_lr=get_float(data, "scale_lr", cls.scale_lr, path, 0.0),
            lr=get_float(data, "lr", cls.lr, path, 0.0),
            warm_up=get_float(data, "warm_up", cls.warm_up, path, 0.0, 1.0, hi_open=True),
            weight=get_float(data, "weight", cls.weight, path, 0.0),
            b_range=(float(b_range[0]), float(b_range[1])),
            keep_gpu=get_bool(data, "keep_gpu", cls.keep_gpu, path),
            round_mode=RoundMode(mode),
            drop_prob=get_float(data, "drop_prob", cls.drop_prob, path, 0.0, 1.0),
            early_stop=None if early is None else EarlyStopConfig.from_dict(early, join(path, "early_stop")),
            exclude=_patterns(data.get("exclude", []), join(path, "exclude")),
            bias_lr=get_float(data, "bias_lr", cls.bias_lr, path, 0.0),
            mix=MixRule(get_choice(data, "mix", cls.mix.value, path, [m.value for m in MixRule])),
        )


def _patterns(value: Any, path: str) -> tuple[str, ...]:
    """A list of valid regular expressions."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, "expected a list of regular expressions", value)
    for v in value:
        try:
            re.compile(v)
        except re.error as err:
            raise ConfigError(path, f"invalid regular expression ({err})", v) from None
    return tuple(value)


@dataclass(frozen=True)
class LayerQConfig:
    """What one layer gets: a weight and an activation config; None keeps that part FP."""

    w_qconfig: QuantizerConfig | None
    a_qconfig: QuantizerConfig | None


@dataclass(frozen=True)
class QuantConfig:
    """The whole ``quant`` section. Build it with :meth:`from_dict` (validates everything)."""

    w_qconfig: QuantizerConfig = DEFAULT_W
    a_qconfig: QuantizerConfig = DEFAULT_A
    calibrate: int = 256
    recon: ReconConfig | None = field(default_factory=ReconConfig)
    overrides: tuple[tuple[str, LayerQConfig | None], ...] = ()
    rdoq: RDOQConfig | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    version: int = CONFIG_VERSION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], extra_keys: Collection[str] = ()) -> QuantConfig:
        """Validates ``data``; keys in ``extra_keys`` (adapter-specific) are kept in ``extra``."""
        check_keys(data, [*CORE_KEYS, *extra_keys], "")
        version = get_int(data, "version", CONFIG_VERSION, "", 1, CONFIG_VERSION)
        w = QuantizerConfig.from_dict(data.get("w_qconfig") or {}, "w_qconfig", DEFAULT_W, weight=True)
        a = QuantizerConfig.from_dict(data.get("a_qconfig") or {}, "a_qconfig", DEFAULT_A, weight=False)
        recon = data.get("recon", {})
        if recon is not None and version < 3 and "mix" not in recon:
            recon = {**recon, "mix": MixRule.TWICE.value}  # stored before the default became element
        rdoq = None if data.get("rdoq") is None else RDOQConfig.from_dict(data["rdoq"])
        if a.position is Placement.OUTPUT and rdoq is not None and rdoq.target is not Target.WEIGHT:
            raise ConfigError("a_qconfig.position", f"rdoq.target {rdoq.target.value} allocates bits to layer inputs, "
                              "which output placement does not quantize", a.position.value, Placement.INPUT.value)
        overrides = tuple(
            (key, _layer_override(value, f"overrides.{key}", w, a))
            for key, value in (data.get("overrides") or {}).items()
        )
        return cls(
            w_qconfig=w,
            a_qconfig=a,
            calibrate=get_int(data, "calibrate", cls.calibrate, "", 1),
            recon=None if recon is None else ReconConfig.from_dict(recon, "recon"),
            overrides=overrides,
            rdoq=rdoq,
            extra={k: data[k] for k in extra_keys if k in data},
            version=version,
        )

    def for_layer(self, name: str) -> LayerQConfig | None:
        """The configs for module ``name``: its override (exact name, then first ``re:`` match)."""
        for key, value in self.overrides:
            if key == name:
                return value
        for key, value in self.overrides:
            if key.startswith("re:") and re.fullmatch(key[3:], name):
                return value
        return LayerQConfig(self.w_qconfig, self.a_qconfig)

    def with_bits(self, w_bit: int | None = None, a_bit: int | None = None) -> QuantConfig:
        """A copy with other default bit-widths (overrides keep their own)."""
        w = self.w_qconfig if w_bit is None else replace(self.w_qconfig, bit=w_bit)
        a = self.a_qconfig if a_bit is None else replace(self.a_qconfig, bit=a_bit)
        return replace(self, w_qconfig=w, a_qconfig=a)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that :meth:`from_dict` reads back to an equal config."""
        out = asdict(self)
        out.pop("extra")
        out.update(dict(self.extra))
        out["a_qconfig"]["position"] = self.a_qconfig.position.value if self.a_qconfig.position else None
        if self.recon is not None:
            recon = out["recon"]
            recon["round_mode"] = self.recon.round_mode.value
            recon["mix"] = self.recon.mix.value
            recon["b_range"] = list(self.recon.b_range)
            recon["exclude"] = list(self.recon.exclude)
        out["rdoq"] = None if self.rdoq is None else self.rdoq.to_dict()
        out["overrides"] = {
            k: None if v is None else {"w_qconfig": _qdict(v.w_qconfig), "a_qconfig": _qdict(v.a_qconfig)}
            for k, v in self.overrides
        }
        return out


def _qdict(q: QuantizerConfig | None) -> dict[str, Any] | None:
    """An override part as a plain dict; ``position`` belongs to the top-level ``a_qconfig``."""
    return None if q is None else {k: v for k, v in asdict(q).items() if k != "position"}


def _layer_override(value: Any, path: str, w: QuantizerConfig, a: QuantizerConfig) -> LayerQConfig | None:
    """An override: None (layer FP) or ``{w_qconfig, a_qconfig}``, each a partial dict or None."""
    key = path[len("overrides."):]
    if key.startswith("re:"):
        try:
            re.compile(key[3:])
        except re.error as err:
            raise ConfigError(path, f"invalid regular expression ({err})", key) from None
    if value is None:
        return None
    check_keys(value, ["w_qconfig", "a_qconfig"], path)
    parts: dict[str, QuantizerConfig | None] = {}
    for name, base, is_w in (("w_qconfig", w, True), ("a_qconfig", a, False)):
        if name in value and value[name] is None:
            parts[name] = None
        else:
            parts[name] = QuantizerConfig.from_dict(value.get(name) or {}, join(path, name), base, weight=is_w)
    return LayerQConfig(parts["w_qconfig"], parts["a_qconfig"])
