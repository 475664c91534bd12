"""Unit-by-unit reconstruction of a whole model, in forward order (QDrop, Wei et al., ICLR 2022).

For each unit and calibration batch: capture the unit's input in the quantized model (earlier
units already reconstructed) and its input and output in the FP model, pair them call by call into
a bounded :class:`ChunkCache`, then optimize the unit. Parallel units that read one input
(``groups``, :func:`~rdoq_plugins.recon.shared_capture.input_groups`) are captured together, once
per group. The caller chooses the units and how a batch runs;
:mod:`rdoq_plugins.workflow.reconstruct` adds resume and the cache tiers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from rdoq_plugins.errors import NonFiniteError
from rdoq_plugins.finite import check_parameters, check_quantizers
from rdoq_plugins.memory import release_free_memory
from rdoq_plugins.modules.level_quantizer import cursor_levels, level_cursors
from rdoq_plugins.recon.cache import ChunkCache, remove_stale_spills
from rdoq_plugins.recon.capture import Call, capture_calls
from rdoq_plugins.recon.reconstruct import QDropReconstructor, ReconStats
from rdoq_plugins.recon.shared_capture import Held, SharedCaptures
from rdoq_plugins.recon.unit_io import UnitIO

B = TypeVar("B")
Progress = Callable[[Iterable[int]], Iterable[int]]


def cache_unit(
    model: nn.Module,
    fp_model: nn.Module,
    name: str,
    batches: Iterable[B],
    run: Callable[[nn.Module, B], Any],
    cache: ChunkCache,
    io: UnitIO | None = None,
    num_calls: int | None = None,
) -> ChunkCache:
    """Fills ``cache`` with ``(quant_in, fp_in, fp_out)`` of unit ``name`` for every batch and call
    (through ``io`` for units whose inputs and outputs are not tensors, with each call's context).
    A unit with per-level input quantizers tags each call with the pyramid levels it ran at.
    With ``num_calls`` (the unit's calls per forward pass, see
    :func:`~rdoq_plugins.recon.cost.survey_units`) every capture pass stops at the unit's last
    call; without it the first batch's FP pass runs to the model's end to count them."""
    unit_q, unit_fp = model.get_submodule(name), fp_model.get_submodule(name)
    cursors = level_cursors(unit_q)
    levels: list[tuple[int | None, ...]] = []  # per quantized call: its pyramid levels (LevelQuantizer)
    note = unit_q.register_forward_pre_hook(lambda *_: levels.append(cursor_levels(cursors))) if cursors else None
    calls = num_calls
    try:
        for batch in batches:
            fp = capture_calls(fp_model, unit_fp, batch, run, with_output=True, num_calls=calls, io=io)
            calls = len(fp)
            levels.clear()
            quant = capture_calls(model, unit_q, batch, run, with_output=False, num_calls=calls, io=io)
            _add_calls(name, cache, unit_q, quant, fp, levels if cursors else [None] * len(quant), io)
            cache.end_batch()
            del quant, fp
            release_free_memory()
    finally:
        if note is not None:
            note.remove()
    return cache


def _add_calls(name: str, cache: ChunkCache, unit_q: nn.Module, quant: list[Call], fp: list[Call],
               tags: Sequence[Any], io: UnitIO | None) -> None:
    """One batch's captured calls into ``cache`` (``tags``: each call's pyramid levels, or None)."""
    for (q_in, _), (f_in, f_out), tag in zip(quant, fp, tags, strict=True):
        assert f_out is not None
        if io is not None:
            q_t, f_t, o_t, context = io.chunk(unit_q, q_in, f_in, f_out)
            cache.add(q_t, f_t, o_t, context=context, tag=tag)
            continue
        if q_in.shape != f_in.shape:
            raise RuntimeError(f"{name}: quantized and FP inputs differ in shape, "
                               f"{tuple(q_in.shape)} vs {tuple(f_in.shape)}")
        cache.add(q_in, f_in, f_out, tag=tag)


def add_held(model: nn.Module, name: str, held: Sequence[Held], cache: ChunkCache, io: UnitIO | None) -> None:
    """Unit ``name``'s calls captured with its group (:meth:`SharedCaptures.take`, one per batch)
    into ``cache``, as :func:`cache_unit` adds them."""
    unit_q = model.get_submodule(name)
    for q_in, f_in, f_out in held:
        _add_calls(name, cache, unit_q, [(q_in, None)], [(f_in, f_out)], [None], io)
        cache.end_batch()


def reconstruct_units(
    model: nn.Module,
    fp_model: nn.Module,
    unit_names: Sequence[str],
    batches: Sequence[B],
    run: Callable[[nn.Module, B], Any],
    reconstructor: QDropReconstructor,
    progress: Callable[[str], Progress] | None = None,
    max_cache_bytes: int = 4 << 30,
    cache_device: torch.device | str = "cpu",
    spill_dir: Path | None = None,
    io: UnitIO | None = None,
    calls: Mapping[str, int] | None = None,
    store_dtype: torch.dtype | None = None,
    make_cache: Callable[[], ChunkCache] | None = None,
    on_done: Callable[[str, ReconStats, ChunkCache], None] | None = None,
    groups: Sequence[Sequence[str]] = (),
    shared_bytes: int = 4 << 30,
) -> dict[str, ReconStats]:
    """Reconstructs ``model``'s units in order against ``fp_model`` (same module names).

    Args:
        model: the calibrated quantized model (changed in place).
        fp_model: the FP model, with BN folded the same way.
        unit_names: module names of the units, in forward order.
        batches: calibration batches (each is run twice per unit).
        run: ``run(model, batch)`` runs a model on one batch.
        reconstructor: the configured reconstructor.
        progress: ``progress(unit_name)`` returns a wrapper for that unit's iteration loop.
        max_cache_bytes: memory budget of a unit's cache; the rest spills to ``spill_dir``.
        cache_device: where cached chunks live in memory.
        spill_dir: where spilled chunks go (system temp folder if None).
        io: how to cache and rebuild units whose inputs / outputs are not tensors (sparse models).
        calls: each unit's calls per forward pass, so capture passes stop at the unit.
        store_dtype: dtype the cache stores floating-point tensors in (None keeps theirs).
        make_cache: builds each unit's cache (instead of one from the four cache arguments).
        on_done: called after each unit with its name, figures and (still open) cache, e.g. to
            save a resumable state.
        groups: parallel units that read one input object, each called once per pass: captured
            together when the first of them is reached (see :mod:`rdoq_plugins.recon.shared_capture`).
        shared_bytes: budget of a group's held captures; a group over it is captured unit by unit.
    """
    if spill_dir is not None:
        remove_stale_spills(spill_dir)  # left by a run that was killed
    stats: dict[str, ReconStats] = {}
    shared = SharedCaptures(io, shared_bytes)
    group_of = {n: g for g in groups for n in g}
    for i, name in enumerate(unit_names):
        cache = make_cache() if make_cache is not None else ChunkCache(cache_device, max_cache_bytes, spill_dir,
                                                                       store_dtype=store_dtype)
        with cache:
            rest = [n for n in unit_names[i:] if n in group_of.get(name, ())]  # this and later members
            untried = name not in shared and name not in shared.refused
            if untried and len(rest) > 1 and not any(level_cursors(model.get_submodule(n)) for n in rest):
                shared.capture(model, fp_model, rest, batches, run)
            if name in shared:
                add_held(model, name, shared.take(name), cache, io)
            else:
                cache_unit(model, fp_model, name, batches, run, cache, io, (calls or {}).get(name))
            try:
                stats[name] = reconstructor(model.get_submodule(name), cache,
                                            progress(name) if progress else None, io=io)
            except NonFiniteError as err:
                raise NonFiniteError(f"reconstruction of {name}: {err}") from err
            unit = model.get_submodule(name)
            check_quantizers(unit, f"reconstruction of {name}", name)
            check_parameters(unit, f"reconstruction of {name}", name)
            if on_done is not None:
                on_done(name, stats[name], cache)
    return stats
