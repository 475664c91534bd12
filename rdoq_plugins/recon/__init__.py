"""Block reconstruction: QDrop on top of AdaRound and LSQ."""
from rdoq_plugins.recon.cache import ChunkCache, TensorCache, UnitCache
from rdoq_plugins.recon.capture import StopForward, call_order, capture_calls
from rdoq_plugins.recon.pipeline import cache_unit, reconstruct_units
from rdoq_plugins.recon.reconstruct import QDropReconstructor, ReconStats, output_error
from rdoq_plugins.recon.schedule import RoundingSchedule
from rdoq_plugins.recon.unit_io import UnitIO

__all__ = [
    "ChunkCache",
    "QDropReconstructor",
    "ReconStats",
    "RoundingSchedule",
    "StopForward",
    "TensorCache",
    "UnitCache",
    "UnitIO",
    "cache_unit",
    "call_order",
    "capture_calls",
    "output_error",
    "reconstruct_units",
]
