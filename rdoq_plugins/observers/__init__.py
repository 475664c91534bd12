"""Observers: record ranges per quantization unit and compute scale / zero point."""
from rdoq_plugins.observers.base import Observer, range_to_qparams
from rdoq_plugins.observers.grid import GridMSEObserver
from rdoq_plugins.observers.minmax import AvgMinMaxObserver, MinMaxObserver
from rdoq_plugins.observers.mse import AvgMSEFastObserver, AvgMSEObserver, MSEFastObserver, MSEObserver

__all__ = [
    "AvgMSEFastObserver",
    "AvgMSEObserver",
    "AvgMinMaxObserver",
    "GridMSEObserver",
    "MSEFastObserver",
    "MSEObserver",
    "MinMaxObserver",
    "Observer",
    "range_to_qparams",
]
