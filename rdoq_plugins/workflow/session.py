"""What the workflow's steps work on (:class:`Session`) and what they produce (:class:`Result`)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rdoq_plugins.config import ConfigError, QuantConfig
from rdoq_plugins.recon.cost import UnitSurvey
from rdoq_plugins.workflow.adapter import ModelAdapter
from rdoq_plugins.workflow.distributed import Distributed, SingleProcess

if TYPE_CHECKING:
    from rdoq_plugins.rd import LayerCurve, TensorKind
    from rdoq_plugins.workflow.run_state import ResumePoint

CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class CacheOptions:
    """Where a unit's reconstruction cache lives.

    Attributes:
        cache_gb: CPU-memory budget of one unit's cache (pinned when the model is on a GPU).
        gpu_cache_gb: GPU budget when ``recon.keep_gpu`` is on and the model is on a GPU; None
            takes the free GPU memory less a reserve for the optimisation step.
        cache_dtype: dtype cached activations are stored in; chunks whose values overflow
            float16 stay float32.
        disk_passes: how often each spilled chunk is read from disk over a unit's iterations.
    """

    cache_gb: float = 4.0
    gpu_cache_gb: float | None = None
    cache_dtype: str = "float16"
    disk_passes: int = 2

    def check(self, where: str) -> CacheOptions:
        """Itself, when every value is allowed; else a :class:`ConfigError` keyed ``where.<field>``."""
        if isinstance(self.cache_gb, bool) or not isinstance(self.cache_gb, (int, float)) or self.cache_gb < 0:
            raise ConfigError(f"{where}.cache_gb", "expected a number >= 0", self.cache_gb)
        gpu = self.gpu_cache_gb
        if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, (int, float)) or gpu < 0):
            raise ConfigError(f"{where}.gpu_cache_gb", "expected a number >= 0 or None", gpu)
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"{where}.cache_dtype", "unknown dtype", self.cache_dtype, ", ".join(CACHE_DTYPES))
        passes = self.disk_passes
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ConfigError(f"{where}.disk_passes", "expected an integer >= 1", passes)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return CACHE_DTYPES[self.cache_dtype]


@dataclass
class CurveInfo:
    """Where this run's RD curves are and what computing them cost."""

    dir: str
    computed: int
    reused: int
    layers: int
    groups: int
    images: int
    compute_time_s: float


@dataclass
class UnitResult:
    """One reconstructed unit: its iterations, losses and cache figures."""

    iters: int
    first_loss: float
    final_loss: float
    stopped_early: bool
    cache: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitResult:
        return cls(int(data["iters"]), float(data["first_loss"]), float(data["final_loss"]),
                   bool(data["stopped_early"]), dict(data.get("cache", {})))


def summed_timings(*parts: Mapping[str, float]) -> dict[str, float]:
    """Seconds per step, summed over ``parts`` (keys in first-seen order)."""
    out: dict[str, float] = {}
    for part in parts:
        for step, seconds in part.items():
            out[step] = out.get(step, 0.0) + float(seconds)
    return out


@dataclass
class Result:
    """What the steps of one run produced (``report.json`` is written from it).

    ``timings`` holds this attempt's seconds per step (the tools add their own, e.g. ``prepare``);
    ``earlier_timings`` and ``attempts`` come from the resumed state: the summed seconds of the
    attempts before this one (up to their last saved state) and the attempt count, this one included.
    """

    timings: dict[str, float] = field(default_factory=dict)
    curves: CurveInfo | None = None
    allocation: dict[str, Any] | None = None  # the allocation summary, as rd_alloc/summary.json
    recon_units: dict[str, UnitResult] = field(default_factory=dict)
    recon_cost: dict[str, Any] = field(default_factory=dict)
    earlier_timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 1
    running: tuple[str, float] | None = None  # the step in progress and its start (time.time())

    def add_time(self, step: str, seconds: float) -> None:
        """Adds ``seconds`` to ``step``; a running step that counts its own time stops running."""
        self.timings[step] = self.timings.get(step, 0.0) + seconds
        if self.running is not None and self.running[0] == step:
            self.running = None

    def start_step(self, step: str) -> None:
        """Marks ``step`` as running, so a state saved before it ends counts its time so far."""
        self.running = (step, time.time())

    def stop_step(self) -> None:
        self.running = None

    def attempt_timings(self) -> dict[str, float]:
        """This attempt's seconds per step, the running step's time so far included."""
        if self.running is None:
            return dict(self.timings)
        step, start = self.running
        return summed_timings(self.timings, {step: time.time() - start})

    def total_timings(self) -> dict[str, float]:
        """Seconds per step over every attempt: the earlier ones and this one so far."""
        return summed_timings(self.earlier_timings, self.attempt_timings())

    def to_dict(self) -> dict[str, Any]:
        """The report's parts: ``rdoq`` (allocation), ``recon_units``, ``recon_cache``."""
        out: dict[str, Any] = {}
        if self.allocation is not None:
            out["rdoq"] = self.allocation
        if self.curves is not None and self.allocation is None:
            out["rd_curves"] = asdict(self.curves)
        if self.recon_units:
            out["recon_units"] = {k: v.to_dict() for k, v in self.recon_units.items()}
        if self.recon_cost:
            out["recon_cache"] = self.recon_cost
        return out


Progress = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class Session:
    """One quantization run: the quantized model and its FP twin, the calibration batches, the
    adapter that runs them, the work dir and the process group.

    ``model`` is quantized in place by the steps; ``fp_model`` (BN folded the same way) is the
    reference and is never changed.
    """

    model: nn.Module
    fp_model: nn.Module
    qcfg: QuantConfig
    adapter: ModelAdapter
    batches: list[Any]
    work_dir: Path
    device: torch.device
    run_hash: str = ""
    data_hash: str = ""  # what RD curves depend on besides their own settings: model, weights, data
    seed: int = 1005  # reconstruction's sampling and dropping streams
    dist: Distributed = field(default_factory=SingleProcess)
    cache: CacheOptions = field(default_factory=CacheOptions)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("rdoq_plugins"))
    result: Result = field(default_factory=Result)
    resumed: ResumePoint | None = None
    survey: list[UnitSurvey] = field(default_factory=list)
    curves: dict[tuple[str, TensorKind], LayerCurve] | None = None
    show_progress: bool = True

    def progress(self, desc: str, total: int | None = None) -> Progress | None:
        """A progress bar for a loop on rank 0 (None elsewhere or when bars are off)."""
        if self.dist.rank != 0 or not self.show_progress:
            return None
        from tqdm import tqdm

        return lambda it: tqdm(it, desc=desc, total=total, mininterval=2.0, leave=False)

    @property
    def spill_dir(self) -> Path:
        """Where this rank's reconstruction cache spills."""
        return self.work_dir / "quant_state" / f"spill_rank{self.dist.rank}"
