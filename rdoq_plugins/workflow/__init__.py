"""One quantization workflow for every framework: calibrate -> RD curves -> allocate ->
reconstruct -> save / report, through a small adapter protocol (:class:`ModelAdapter`) and a
process-group protocol (:class:`Distributed`)."""
from rdoq_plugins.hashing import content_hash, run_hash
from rdoq_plugins.workflow.adapter import ModelAdapter
from rdoq_plugins.workflow.allocate import ALLOC_DIR, allocate_all, allocate_step
from rdoq_plugins.workflow.calibrate import calibrate_step
from rdoq_plugins.workflow.checkpoint import (
    FORMAT,
    SPARSE_FORMAT,
    CheckpointError,
    check_finite,
    checkpoint_identity,
    is_quantized,
    load_quantized,
    read_checkpoint,
    save_quantized,
    state_dict_of,
)
from rdoq_plugins.workflow.curves import CURVE_DIR, curve_batches, curve_store, curves_step
from rdoq_plugins.workflow.distributed import Distributed, SingleProcess, TorchDistributed, barrier, current
from rdoq_plugins.workflow.launch import init_distributed
from rdoq_plugins.workflow.reconstruct import plan_reconstruction, reconstruct_step
from rdoq_plugins.workflow.report import build_report, format_table, write_report
from rdoq_plugins.workflow.run_state import STATE_FILE, ResumePoint, resume, save_state
from rdoq_plugins.workflow.session import CacheOptions, CurveInfo, Result, Session, UnitResult
from rdoq_plugins.workflow.steps import (
    Step,
    check_order,
    check_steps,
    default_steps,
    method_name,
    run_step,
    run_steps,
)
from rdoq_plugins.workflow.work_dir import WorkDirError, WorkDirLock, check_writable, hold_work_dir

__all__ = [
    "ALLOC_DIR",
    "CURVE_DIR",
    "FORMAT",
    "SPARSE_FORMAT",
    "STATE_FILE",
    "CacheOptions",
    "CheckpointError",
    "CurveInfo",
    "Distributed",
    "ModelAdapter",
    "Result",
    "ResumePoint",
    "Session",
    "SingleProcess",
    "Step",
    "TorchDistributed",
    "UnitResult",
    "WorkDirError",
    "WorkDirLock",
    "allocate_all",
    "allocate_step",
    "barrier",
    "build_report",
    "calibrate_step",
    "check_finite",
    "check_order",
    "check_steps",
    "check_writable",
    "checkpoint_identity",
    "content_hash",
    "current",
    "curve_batches",
    "curve_store",
    "curves_step",
    "default_steps",
    "format_table",
    "hold_work_dir",
    "init_distributed",
    "is_quantized",
    "load_quantized",
    "method_name",
    "plan_reconstruction",
    "read_checkpoint",
    "reconstruct_step",
    "resume",
    "run_hash",
    "run_step",
    "run_steps",
    "save_quantized",
    "save_state",
    "state_dict_of",
    "write_report",
]
