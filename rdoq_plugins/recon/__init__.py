"""Block reconstruction: QDrop on top of AdaRound and LSQ."""
from rdoq_plugins.recon.cache import ChunkCache, TensorCache, UnitCache, remove_stale_spills
from rdoq_plugins.recon.capture import StopForward, call_order, capture_calls
from rdoq_plugins.recon.cost import (
    DiskSpaceError,
    UnitCachePlan,
    UnitSurvey,
    check_disk,
    cost_summary,
    gpu_cache_bytes,
    plan_cache,
    split_tiers,
    survey_units,
)
from rdoq_plugins.recon.reconstruct import QDropReconstructor, ReconStats, output_error
from rdoq_plugins.recon.schedule import RoundingSchedule
from rdoq_plugins.recon.unit_io import UnitIO
from rdoq_plugins.recon.unit_loop import cache_unit, reconstruct_units

__all__ = [
    "ChunkCache",
    "DiskSpaceError",
    "QDropReconstructor",
    "ReconStats",
    "RoundingSchedule",
    "StopForward",
    "TensorCache",
    "UnitCache",
    "UnitCachePlan",
    "UnitIO",
    "UnitSurvey",
    "cache_unit",
    "call_order",
    "capture_calls",
    "check_disk",
    "cost_summary",
    "gpu_cache_bytes",
    "output_error",
    "plan_cache",
    "reconstruct_units",
    "remove_stale_spills",
    "split_tiers",
    "survey_units",
]
