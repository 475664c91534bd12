"""Block reconstruction: QDrop on top of AdaRound and LSQ."""
from rdoq_plugins.recon.cache import TensorCache, UnitCache
from rdoq_plugins.recon.capture import StopForward, capture_io
from rdoq_plugins.recon.pipeline import reconstruct_units
from rdoq_plugins.recon.reconstruct import QDropReconstructor, ReconStats, output_error
from rdoq_plugins.recon.schedule import RoundingSchedule

__all__ = [
    "QDropReconstructor",
    "ReconStats",
    "RoundingSchedule",
    "StopForward",
    "TensorCache",
    "UnitCache",
    "capture_io",
    "output_error",
    "reconstruct_units",
]
