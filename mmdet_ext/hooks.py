"""Quantization hooks for mmdet 2.28's test loop, registered in mmcv's ``HOOKS`` registry.

mmdet 2.28 has no test-time hooks, so ``tools/test.py`` (and ``tools/recon.py``) build the hooks
listed in the config's ``quant.hooks``, call every hook's ``check`` (cheap checks and cost
projections, before the FP evaluation), then their ``before_test`` stage in priority order, after
the checkpoint is loaded and before the test loop. Each hook is a shell over one step of the core
workflow (:mod:`rdoq_plugins.workflow`) and takes the run's
:class:`~rdoq_plugins.workflow.Session`. Gradients are enabled inside the hooks.

Config::

    quant = dict(
        w_qconfig=dict(bit=4), a_qconfig=dict(bit=4), calibrate=256,
        hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook')])
"""
from __future__ import annotations

from mmcv.runner import HOOKS, Hook

from rdoq_plugins.workflow import CacheOptions, Session, Step, run_step


class QuantHook(Hook):
    """A quantization hook: one workflow step as the ``before_test`` stage."""

    priority = "NORMAL"
    step: Step | None = None

    def check(self, session: Session) -> None:
        """Runs before any hook's work, before the workflow's own checks of the hooks' steps
        (units, layers, the reconstruction cost): sets what those checks need."""

    def before_test(self, session: Session) -> None:
        """Runs the hook's workflow step after the checkpoint is loaded and before the test loop."""
        if self.step is not None:
            run_step(session, self.step)


@HOOKS.register_module()
class QuantCalibHook(QuantHook):
    """Calibration: activation ranges on FP activations, then weights (QDrop's order); the
    observers of all ranks are merged. Skipped when the work dir holds a resumable state.

    Config: ``dict(type='QuantCalibHook')``; the image count is the quant config's ``calibrate``.
    """

    priority = "VERY_HIGH"
    step = Step.CALIBRATE


@HOOKS.register_module()
class RDCurvesHook(QuantHook):
    """Rate-distortion curves per channel group of every allocated layer (``rdoq.estimator``), on
    the FP model, with the FPN outputs and head outputs as the target (Wang et al., "RDO-Q", ECCV
    2022). Curves are stored per layer in ``work_dir/rd_curves/<hash>/`` and reused by a rerun.

    Config: ``dict(type='RDCurvesHook')``; settings come from the quant config's ``rdoq`` section.
    """

    priority = "HIGH"
    step = Step.CURVES


@HOOKS.register_module()
class BitAllocHook(QuantHook):
    """Bit allocation for every ``rdoq.target_rates`` entry (``rdoq.solver``), the additivity
    check, then ``rdoq.apply_rate``'s allocation applied as per-group bits and steps; results in
    ``work_dir/rd_alloc/``. Skipped on resume when the saved state already holds it.

    Config: ``dict(type='BitAllocHook')``; list ``RDCurvesHook`` before it.
    """

    priority = "ABOVE_NORMAL"
    step = Step.ALLOCATE


@HOOKS.register_module()
class QDropReconHook(QuantHook):
    """QDrop block reconstruction of every unit in forward order (Wei et al., ICLR 2022), saving
    the state after each unit; a rerun with the same work dir continues after the last one.

    Before any work (the workflow's checks, after :meth:`check`), one FP pass over the first batch
    projects every unit's cache at the configured ``calibrate``; the projection goes to
    ``report.json`` (``recon_cache``) and a run whose spill would not fit on the disk stops there.

    Config: ``dict(type='QDropReconHook', cache_gb=4.0)``; hyper-parameters come from ``recon``.

    Args:
        cache_gb: CPU-memory budget of one unit's cache (pinned when the model is on a GPU).
        gpu_cache_gb: GPU budget of one unit's cache when ``recon.keep_gpu`` is on and the model is
            on a GPU; None takes the free GPU memory less a reserve for the optimisation step.
        cache_dtype: dtype cached activations are stored in: ``float16`` (default; half the bytes
            of float32, chunks whose values overflow it stay float32), ``bfloat16`` or ``float32``.
        disk_passes: how often each spilled chunk is read from disk over a unit's iterations.
    """

    priority = "NORMAL"
    step = Step.RECONSTRUCT

    def __init__(self, cache_gb: float = 4.0, gpu_cache_gb: float | None = None, cache_dtype: str = "float16",
                 disk_passes: int = 2) -> None:
        self.cache = CacheOptions(cache_gb, gpu_cache_gb, cache_dtype, disk_passes).check("hooks.QDropReconHook")

    def check(self, session: Session) -> None:
        session.cache = self.cache  # the workflow's checks then project the cache with it
