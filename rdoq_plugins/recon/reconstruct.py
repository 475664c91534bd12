"""Block reconstruction with QDrop (Wei et al., ICLR 2022), on top of AdaRound + LSQ.

One straight-line function per unit: set up rounding variables and step sizes -> optimize the
unit's output error against the FP output, mixing quantized and FP inputs and activations as QDrop
does -> harden the rounding. ``drop_prob = 1`` gives BRECQ-style joint reconstruction without
dropping (Li et al., ICLR 2021).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rdoq_plugins.config.schema import ReconConfig
from rdoq_plugins.errors import NonFiniteError
from rdoq_plugins.modules.level_quantizer import at_levels, level_cursors
from rdoq_plugins.modules.quant_layer import QuantLayer
from rdoq_plugins.modules.switch import quantizers, set_quant_state
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize, RoundMode
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.qdrop import MixRule, keep_mask, qdrop_mix, shared_mask
from rdoq_plugins.recon.cache import Chunk, ChunkCache, UnitCache
from rdoq_plugins.recon.draw import ChunkDraw, ShareGroup, batch_counts, step_generator, step_seed
from rdoq_plugins.recon.schedule import RoundingSchedule
from rdoq_plugins.recon.unit_io import UnitIO
from rdoq_plugins.registry import RECONSTRUCTORS


@dataclass
class ReconStats:
    """What one unit's reconstruction did; losses are means over the first / last tenth of the run."""

    iters: int
    first_loss: float
    final_loss: float
    stopped_early: bool


def output_error(out: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over channels (dim 1), averaged over batch and space."""
    err = (out - target).pow(2)
    return err.sum(dim=1).mean() if err.dim() > 1 else err.mean()


def _adaround_quantizers(unit: nn.Module) -> Iterator[tuple[QuantLayer, AdaRoundFakeQuantize]]:
    for layer in unit.modules():
        if isinstance(layer, QuantLayer) and isinstance(layer.weight_quantizer, AdaRoundFakeQuantize):
            yield layer, layer.weight_quantizer


def _biases(unit: nn.Module) -> list[nn.Parameter]:
    """The biases of the unit's quantized layers (trained when ``recon.bias_lr > 0``)."""
    return [layer.bias for layer in unit.modules()
            if isinstance(layer, QuantLayer) and isinstance(getattr(layer, "bias", None), nn.Parameter)]


def _window_plateau(losses: list[float], window: int, min_rel: float) -> bool:
    if len(losses) < 2 * window:
        return False
    prev = sum(losses[-2 * window : -window]) / window
    cur = sum(losses[-window:]) / window
    return prev <= 0 or (prev - cur) / prev < min_rel


@RECONSTRUCTORS.register("QDrop")
class QDropReconstructor:
    """Reconstructs one unit at a time with the ``recon`` section of the config.

    Args:
        cfg: the validated ``recon`` config.
        seed: seed of the sampling and dropping random streams; each step's draws and masks come
            from the seed and the step alone, so a resumed run reconstructs each remaining unit
            exactly as an uninterrupted run would, on any number of processes.
        group: the processes sharing the run (see :mod:`rdoq_plugins.recon.draw`; each rank's
            cache holds its share of the global batches): each step is computed by the rank that
            holds its chunk, gradients and losses are summed over ranks. None for one process.
    """

    def __init__(self, cfg: ReconConfig, seed: int = 1005, group: ShareGroup | None = None) -> None:
        self.cfg = cfg
        self.seed = seed
        self.group = group

    def __call__(self, unit: nn.Module, cache: UnitCache, progress: Any = None,
                 io: UnitIO | None = None, draw: ChunkDraw | None = None) -> ReconStats:
        """Optimizes ``unit``'s rounding and step sizes in place; ``progress`` wraps the loop.

        ``draw`` picks each step's chunk from the global list (a :class:`ChunkCache` filled by
        :func:`~rdoq_plugins.recon.cache_unit`; built from the cache when None). With ``io``
        (units whose inputs are not tensors, e.g. sparse), each step reads one whole cached chunk
        with its context and runs the unit through ``io``.
        """
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        if draw is None and isinstance(cache, ChunkCache):
            draw = ChunkDraw.shared(batch_counts(cache), self.group)
        with torch.random.fork_rng(devices=devices):
            return self._reconstruct(unit, cache, progress, io, draw)

    def _read(self, cache: UnitCache, draw: ChunkDraw | None, generator: torch.Generator,
              io: UnitIO | None) -> tuple[Chunk, Any, Any] | None:
        """This step's ``(chunk, context, levels tag)``, or None when another rank holds it."""
        if draw is None:  # a plain tensor cache in one process
            return cache.sample(self.cfg.batch_size, generator), None, ()
        i = draw.local(generator)
        if i is None:
            return None
        assert isinstance(cache, ChunkCache)
        i = cache.redirect(i, generator)
        if io is not None:
            q, f, o, context = cache.chunk_with_context(i)
            return (q, f, o), context, ()
        chunk, tag = cache.pick(i, self.cfg.batch_size, generator)
        return chunk, None, tag if tag is not None else ()

    def _mix(self, q_in: Tensor, fp_in: Tensor, act_qs: list[FakeQuantize]) -> tuple[Tensor, AbstractContextManager[Any]]:
        """The unit's input this step, and the context its quantizers run in (``recon.mix``)."""
        p = self.cfg.drop_prob
        if p >= 1.0:
            return q_in, nullcontext()
        if self.cfg.mix == MixRule.TWICE:  # a str enum: the plain string compares equal too
            return qdrop_mix(fp_in, q_in, p), nullcontext()
        mask = keep_mask(q_in, p)
        x = torch.where(mask, q_in, fp_in)
        return x, shared_mask(act_qs, x, mask)

    def _reconstruct(self, unit: nn.Module, cache: UnitCache, progress: Any, io: UnitIO | None,
                     draw: ChunkDraw | None) -> ReconStats:
        cfg = self.cfg
        group = self.group if self.group is not None and self.group.world > 1 else None
        frozen = [p for p in unit.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        rounding = list(_adaround_quantizers(unit))
        if cfg.round_mode is RoundMode.LEARNED_HARD_SIGMOID:
            for layer, q in rounding:
                q.init_rounding(layer.weight)  # type: ignore[arg-type]
        alphas = [q.alpha for _, q in rounding if q.alpha.numel()]
        act_qs = list(quantizers(unit, weight=False))
        steps = [t for q in act_qs for t in (q.scale, q.zero_point) if isinstance(t, nn.Parameter)]
        biases = _biases(unit) if cfg.bias_lr > 0 else []
        trained = [*alphas, *steps, *biases]
        for t in trained:
            t.requires_grad_(True)
        opt_w = torch.optim.Adam(alphas, lr=cfg.lr) if alphas else None
        opt_a = torch.optim.Adam(steps, lr=cfg.scale_lr) if steps else None
        opt_b = torch.optim.Adam(biases, lr=cfg.bias_lr) if biases else None
        sched_a = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt_a, T_max=max(cfg.iters, 1), eta_min=0.0)
            if opt_a else None
        )
        schedule = RoundingSchedule(cfg.iters, cfg.warm_up, cfg.b_range, cfg.weight)
        set_quant_state(unit, weight=True, act=True)
        for q in act_qs:
            q.set_keep_prob(cfg.drop_prob)
            q.train()
        cursors = level_cursors(unit)
        if cursors and io is not None:
            raise NotImplementedError("per-level input quantizers in a unit with a UnitIO")
        plan = getattr(cache, "plan", None)
        if plan is not None:  # a ChunkCache rotates its disk windows over this rank's draws
            plan(round(cfg.iters * (draw.local_share if draw is not None else 1.0)))
        losses: list[float] = []
        stopped = False
        loop = range(cfg.iters)
        bar = progress(loop) if progress is not None else loop
        try:
            for t in bar:
                generator = step_generator(self.seed, t)
                torch.manual_seed(step_seed(self.seed, t))  # this step's dropping masks
                for opt in (opt_w, opt_a, opt_b):
                    if opt is not None:
                        opt.zero_grad(set_to_none=True)
                read = self._read(cache, draw, generator, io)
                rec = torch.zeros(())
                if read is not None:  # this rank holds the step's chunk
                    (q_in, fp_in, fp_out), context, levels = read
                    x, mixing = self._mix(q_in, fp_in, act_qs)
                    with mixing, at_levels(cursors, levels):
                        out = unit(x) if io is None else io.run(unit, x, context)
                    rec = output_error(out, fp_out)
                    loss = rec
                    lam = schedule.lam(t)
                    if lam > 0 and rounding:
                        beta = schedule.beta(t)
                        loss = rec + lam * sum(q.rounding_loss(beta) for _, q in rounding)
                    if loss.requires_grad:
                        loss.backward()
                if group is not None:
                    group.sum_gradients(trained)
                for opt in (opt_w, opt_a, opt_b):
                    if opt is not None:
                        opt.step()
                if sched_a is not None:
                    sched_a.step()
                value = float(rec.detach())
                value = group.sum(value) if group is not None else value
                if not math.isfinite(value):
                    raise NonFiniteError(f"the reconstruction loss is {value} at step {t}")
                losses.append(value)
                if t % 50 == 0 and hasattr(bar, "set_postfix"):
                    bar.set_postfix(rec=f"{losses[-1]:.4g}", refresh=False)
                es = cfg.early_stop
                if (es is not None and t >= schedule.start
                        and _window_plateau(losses, es.window, es.min_rel_improvement)):
                    stopped = True
                    break
        finally:
            for q in act_qs:
                q.set_keep_prob(1.0)
                q.eval()
            for t in trained:
                t.requires_grad_(False)
            for p in frozen:
                p.requires_grad_(True)
        if cfg.round_mode is RoundMode.LEARNED_HARD_SIGMOID:
            for _, q in rounding:
                q.harden()
        window = max(1, len(losses) // 10)  # single steps are noisy: average a tenth of the run
        first = sum(losses[:window]) / window if losses else math.nan
        final = sum(losses[-window:]) / window if losses else math.nan
        return ReconStats(len(losses), first, final, stopped)
