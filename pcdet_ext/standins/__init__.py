"""Stand-ins that let an unbuilt OpenPCDet checkout import, used only where the real modules are
missing.

OpenPCDet's ``python setup.py develop`` compiles seven CUDA extensions and writes
``pcdet/version.py``; ``pcdet.models`` / ``pcdet.datasets`` import all of them, and
``pcdet.datasets.argo2`` imports the Argoverse 2 package ``av2``, at import time. VoxelNeXt on
nuScenes calls none of them except the rotated IoU / NMS of ``iou3d_nms_cuda``. So
:func:`install_standins` appends a finder to the *end* of ``sys.meta_path``: Python asks it only
after its own finders found nothing, so a built extension or an installed ``av2`` always wins. It
serves:

=================================================  ==============================================
module                                             stand-in
=================================================  ==============================================
``pcdet.version``                                  ``__version__ = "0.0.0+standin"``
``pcdet.ops.iou3d_nms.iou3d_nms_cuda``             :mod:`pcdet_ext.standins.iou3d_nms_cuda`: the
                                                   op's functions on CPU (exact rotated geometry)
``...roiaware_pool3d.roiaware_pool3d_cuda``,       every function raises NotImplementedError
``...roipoint_pool3d.roipoint_pool3d_cuda``,       naming the op (VoxelNeXt never calls them)
``...pointnet2_stack.pointnet2_stack_cuda``,
``...pointnet2_batch.pointnet2_batch_cuda``,
``pcdet.ops.bev_pool.bev_pool_ext``,
``pcdet.ops.ingroup_inds.ingroup_inds_cuda``
``av2`` and every ``av2.*`` module                 packages whose attributes are placeholders that
                                                   raise NotImplementedError when called
=================================================  ==============================================

Needs the standard library only; each stand-in logs once, at INFO, when it is loaded.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

logger = logging.getLogger("pcdet_ext")

VERSION = "0.0.0+standin"
IOU3D = "pcdet.ops.iou3d_nms.iou3d_nms_cuda"
# Compiled extensions the VoxelNeXt path imports but never calls.
UNUSED_OPS = (
    "pcdet.ops.roiaware_pool3d.roiaware_pool3d_cuda",
    "pcdet.ops.roipoint_pool3d.roipoint_pool3d_cuda",
    "pcdet.ops.pointnet2.pointnet2_stack.pointnet2_stack_cuda",
    "pcdet.ops.pointnet2.pointnet2_batch.pointnet2_batch_cuda",
    "pcdet.ops.bev_pool.bev_pool_ext",
    "pcdet.ops.ingroup_inds.ingroup_inds_cuda",
)
COMPILED = (IOU3D, *UNUSED_OPS)
HINT = ("build OpenPCDet's CUDA ops (python setup.py develop on a CUDA machine) or install the package; "
        "pcdet_ext's stand-in only lets pcdet import")


def _unavailable(qualname: str) -> Any:
    """A callable placeholder for ``qualname`` that raises NotImplementedError when called."""
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{qualname} is a stand-in: {HINT}")

    unavailable.__qualname__ = unavailable.__name__ = qualname.rsplit(".", 1)[-1]
    return unavailable


def _module_getattr(module_name: str) -> Any:
    """A module ``__getattr__`` (PEP 562) that answers every public name with a placeholder."""
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # import machinery probes dunders; they must stay absent
        return _unavailable(f"{module_name}.{name}")

    return __getattr__


class _StandinLoader(importlib.abc.Loader):
    """Fills a fresh module with the stand-in of its name."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        module.__dict__["__standin__"] = True
        if name == "pcdet.version":
            module.__dict__["__version__"] = VERSION
        elif name == IOU3D:
            real = importlib.import_module("pcdet_ext.standins.iou3d_nms_cuda")
            module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        else:
            module.__dict__["__getattr__"] = _module_getattr(name)
        logger.info("%s is missing: using pcdet_ext's stand-in", name)


class StandinFinder(importlib.abc.MetaPathFinder):
    """Finds the stand-ins of :data:`COMPILED`, ``pcdet.version`` and ``av2``; last on the path."""

    loader = _StandinLoader()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in COMPILED or fullname == "pcdet.version":
            return importlib.machinery.ModuleSpec(fullname, self.loader)
        if fullname == "av2" or fullname.startswith("av2."):
            return importlib.machinery.ModuleSpec(fullname, self.loader, is_package=True)
        return None


def install_standins() -> StandinFinder:
    """Appends the stand-in finder to ``sys.meta_path`` (once); returns it."""
    for finder in sys.meta_path:
        if isinstance(finder, StandinFinder):
            return finder
    finder = StandinFinder()
    sys.meta_path.append(finder)
    return finder


def standins_in_use() -> list[str]:
    """The modules now loaded from a stand-in."""
    return sorted(name for name, m in list(sys.modules.items()) if getattr(m, "__dict__", {}).get("__standin__"))


__all__ = ["COMPILED", "UNUSED_OPS", "StandinFinder", "install_standins", "standins_in_use"]
