"""The ``rdoq`` section: RD curves per channel group and the bit allocation (RDOQ, Wang et al.,
"RDO-Q", ECCV 2022).

Example (YAML)::

    rdoq:
      estimator: second_order      # or measured (one pass per candidate)
      target: weight               # weight | act | joint | both: which tensors get allocated bits
      target_rates: [2, 3, 4]      # average bits per element; dp_alloc.py allocates each
      act_rate: 4                  # target both only: the activations' own average bits
      apply_rate: 3                # the one the test loop applies (default: the first)
      solver: dp                   # dp | lagrangian | greedy
      min_bits: 1
      weight_group: 8              # output channels per weight group (RDOQ's nchannelbatch)
      act_group: 8
      weight_bits: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
      weight_ratios: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
      calib_images: 32             # images used for curves (default: all calibration images)
      passes: 2                    # second_order: passes over the images, each storing its share of layers
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rdoq_plugins.config.errors import ConfigError, check_keys, get_bool, get_choice, get_float, get_int, join
from rdoq_plugins.quant.uniform import MAX_BITS

SOLVERS = ("dp", "lagrangian", "greedy")


class Estimator(str, Enum):
    """How RD curves are computed."""

    SECOND_ORDER = "second_order"
    MEASURED = "measured"


class Target(str, Enum):
    """Which tensors the allocation covers; the others keep the uniform config bits.

    ``joint`` shares one budget between weights and activations; ``both`` gives each its own
    (weights at a target rate, activations at ``act_rate``), so the average weight bits stay the
    target's. Distortion is additive over groups, so two budgets are two independent knapsacks.
    """

    WEIGHT = "weight"
    ACT = "act"
    JOINT = "joint"
    BOTH = "both"


def _numbers(data: Mapping[str, Any], key: str, default: Sequence[float], path: str, lo: float, hi: float,
             integer: bool) -> tuple[Any, ...]:
    value = data.get(key, list(default))
    kind = "integers" if integer else "numbers"
    allowed = f"a non-empty list of {kind} in [{lo}, {hi}]"
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        not isinstance(v, bool) and isinstance(v, int if integer else (int, float)) and lo <= v <= hi for v in value)
    if not ok:
        raise ConfigError(join(path, key), "invalid", value, allowed)
    return tuple(int(v) if integer else float(v) for v in value)


@dataclass(frozen=True)
class RDOQConfig:
    """Validated ``rdoq`` section (see the module docstring for the keys)."""

    estimator: Estimator = Estimator.SECOND_ORDER
    target: Target = Target.WEIGHT
    target_rates: tuple[float, ...] = (4.0,)
    apply_rate: float = 4.0
    act_rate: float | None = None
    solver: str = "dp"
    min_bits: int = 0
    weight_group: int = 8
    act_group: int = 8
    weight_bits: tuple[int, ...] = tuple(range(11))
    weight_ratios: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
    act_bits: tuple[int, ...] = tuple(range(9))
    act_ratios: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4)
    projections: int = 4
    kappa: float = 1e-7
    seed: int = 0
    calib_images: int | None = None
    passes: int = 2
    additivity: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "rdoq") -> RDOQConfig:
        check_keys(data, list(cls.__dataclass_fields__), path)
        est = get_choice(data, "estimator", cls.estimator.value, path, [e.value for e in Estimator])
        target = get_choice(data, "target", cls.target.value, path, [t.value for t in Target])
        rates = _numbers(data, "target_rates", cls.target_rates, path, 0.0, float(MAX_BITS), integer=False)
        apply_rate = get_float(data, "apply_rate", rates[0], path, 0.0, float(MAX_BITS))
        if apply_rate not in rates:
            raise ConfigError(join(path, "apply_rate"), "must be one of target_rates", apply_rate,
                              ", ".join(str(r) for r in rates))
        w_bits = _numbers(data, "weight_bits", cls.weight_bits, path, 0, MAX_BITS, integer=True)
        a_bits = _numbers(data, "act_bits", cls.act_bits, path, 0, MAX_BITS, integer=True)
        for key, bits in (("weight_bits", w_bits), ("act_bits", a_bits)):
            if list(bits) != sorted(set(bits)):
                raise ConfigError(join(path, key), "must be increasing without repeats", list(bits))
        images = data.get("calib_images")
        act_rate = data.get("act_rate")
        if (act_rate is None) == (target == Target.BOTH.value):
            raise ConfigError(join(path, "act_rate"), "is required with target 'both' and only allowed there",
                              act_rate, "an average bit-width with target: both; absent otherwise")
        cfg = cls(
            act_rate=None if act_rate is None else get_float(data, "act_rate", 0.0, path, 0.0, float(MAX_BITS)),
            estimator=Estimator(est), target=Target(target), target_rates=rates, apply_rate=apply_rate,
            solver=get_choice(data, "solver", cls.solver, path, SOLVERS),
            min_bits=get_int(data, "min_bits", cls.min_bits, path, 0, MAX_BITS),
            weight_group=get_int(data, "weight_group", cls.weight_group, path, 1),
            act_group=get_int(data, "act_group", cls.act_group, path, 1),
            weight_bits=w_bits, act_bits=a_bits,
            weight_ratios=_numbers(data, "weight_ratios", cls.weight_ratios, path, 1e-3, 1.0, integer=False),
            act_ratios=_numbers(data, "act_ratios", cls.act_ratios, path, 1e-3, 1.0, integer=False),
            projections=get_int(data, "projections", cls.projections, path, 1),
            kappa=get_float(data, "kappa", cls.kappa, path, 0.0),
            seed=get_int(data, "seed", cls.seed, path, 0),
            calib_images=None if images is None else get_int(data, "calib_images", None, path, 1),
            passes=get_int(data, "passes", cls.passes, path, 1),
            additivity=get_bool(data, "additivity", cls.additivity, path),
        )
        cfg.check_rates(path)
        return cfg

    def check_rates(self, path: str = "rdoq") -> None:
        """Every target rate (and ``act_rate``) lies within the bits the curves are computed for
        (``weight_bits`` / ``act_bits`` at or above ``min_bits``): a :class:`ConfigError` naming
        the key, the rate and the allowed range otherwise."""
        budgets = [("target_rates", r, False) for r in self.target_rates]
        if self.act_rate is not None:
            budgets.append(("act_rate", self.act_rate, True))
        for key, rate, acts in budgets:
            lo, hi = self.rate_range(acts)
            if not lo <= rate <= hi:
                raise ConfigError(join(path, key), f"{rate} is outside the curves' bits and min_bits",
                                  list(self.target_rates) if key == "target_rates" else rate,
                                  f"rates in [{lo}, {hi}]")

    def rate_range(self, acts: bool = False) -> tuple[int, int]:
        """The lowest and highest average rate the candidates can reach; with ``target: both``,
        of the activations' budget (``acts``) or of the weights'."""
        both = self.target is Target.BOTH
        with_w = self.target is not Target.ACT and not (both and acts)
        with_a = self.target is not Target.WEIGHT and not (both and not acts)
        bits = [*(self.weight_bits if with_w else ()), *(self.act_bits if with_a else ())]
        allowed = [b for b in bits if b >= self.min_bits]
        if not allowed:
            raise ConfigError("rdoq.min_bits", "leaves no candidate bit-width", self.min_bits, f"<= {max(bits)}")
        return min(allowed), max(allowed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["estimator"], out["target"] = self.estimator.value, self.target.value
        for k in ("target_rates", "weight_bits", "act_bits", "weight_ratios", "act_ratios"):
            out[k] = list(out[k])
        if self.act_rate is None:  # absent unless set: configs without it hash alike (resume)
            del out["act_rate"]
        if self.passes == RDOQConfig.passes:  # as act_rate: run hashes of earlier configs stay
            del out["passes"]
        return out
