"""Imports OpenPCDet lazily: ``pcdet``'s modules and its ``tools/eval_utils``, with install
instructions when they are missing.

Needs the standard library only, so a tool can print :data:`OPENPCDET_INSTALL` even when spconv
(and with it ``pcdet_ext``) cannot be imported.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

OPENPCDET_INSTALL = (
    "The OpenPCDet tools need OpenPCDet and a CUDA build of spconv:\n"
    "  1. spconv for your CUDA version: pip uninstall -y spconv && pip install spconv-cu124==2.3.8\n"
    "     (spconv-cu121, spconv-cu124 or spconv-cu126 to match your CUDA toolkit;\n"
    "     spconv-cu120 stops at 2.3.6)\n"
    "  2. OpenPCDet built from source, which compiles its CUDA ops:\n"
    "     git clone https://github.com/open-mmlab/OpenPCDet && cd OpenPCDet &&\n"
    "     pip install -r requirements.txt && python setup.py develop\n"
    "Then run the tools from OpenPCDet's tools/ folder (its configs use paths relative to it).\n"
    "See docs/openpcdet.md ('Install'). Without OpenPCDet, the sparse quantization path runs on\n"
    "the project's VoxelNeXt-shaped toy (`make test`) on CPU."
)


class PcdetMissing(RuntimeError):
    """OpenPCDet (``pcdet``) or its ``tools/eval_utils`` cannot be imported."""


def missing_pcdet_message(err: BaseException) -> str:
    """The error a tool prints when OpenPCDet (or spconv) cannot be imported."""
    return f"error: OpenPCDet (pcdet) is not importable ({type(err).__name__}: {err}).\n{OPENPCDET_INSTALL}"


def import_pcdet(need_eval: bool = True) -> SimpleNamespace:
    """OpenPCDet's modules the adapter uses: ``config``, ``build_dataloader``, ``build_network``,
    ``common_utils`` and (``need_eval``) ``eval_utils``; :class:`PcdetMissing` with install
    instructions when they cannot be imported.

    An unbuilt checkout imports too: ``$OPENPCDET_ROOT`` goes on ``sys.path`` when ``pcdet`` is not
    importable otherwise, and the compiled extensions, ``pcdet/version.py`` and ``av2`` it lacks
    come from :mod:`pcdet_ext.standins` (used only where the real ones are missing)."""
    from pcdet_ext.standins import install_standins

    install_standins()
    add_openpcdet_root()
    try:
        import pcdet
        from pcdet import config
        from pcdet.datasets import build_dataloader
        from pcdet.models import build_network
        from pcdet.utils import common_utils
    except (ImportError, OSError) as err:
        raise PcdetMissing(f"OpenPCDet (pcdet) is not importable ({type(err).__name__}: {err}).\n"
                           f"{OPENPCDET_INSTALL}") from err
    ns = SimpleNamespace(pcdet=pcdet, config=config, build_dataloader=build_dataloader,
                         build_network=build_network, common_utils=common_utils, eval_utils=None)
    if need_eval:
        ns.eval_utils = import_eval_utils(pcdet)
    return ns


def add_openpcdet_root() -> Path | None:
    """Puts ``$OPENPCDET_ROOT`` first on ``sys.path`` when it is set, holds ``pcdet/`` and ``pcdet``
    is not importable otherwise; returns the folder added, if any."""
    root = os.environ.get("OPENPCDET_ROOT")
    if not root or not (Path(root) / "pcdet" / "__init__.py").is_file():
        return None
    if "pcdet" in sys.modules or importlib.util.find_spec("pcdet") is not None:
        return None
    sys.path.insert(0, str(Path(root).resolve()))
    return Path(root).resolve()


def eval_utils_candidates(pcdet: ModuleType) -> list[Path]:
    """Where OpenPCDet's ``tools/eval_utils/eval_utils.py`` may be: ``$OPENPCDET_ROOT/tools``, the
    checkout ``pcdet`` was installed from (``python setup.py develop``), the working directory."""
    roots = []
    if os.environ.get("OPENPCDET_ROOT"):
        roots.append(Path(os.environ["OPENPCDET_ROOT"]) / "tools")
    if getattr(pcdet, "__file__", None):
        roots.append(Path(pcdet.__file__).resolve().parents[1] / "tools")
    roots += [Path.cwd(), Path.cwd() / "tools"]
    return [r / "eval_utils" / "eval_utils.py" for r in roots]


def import_eval_utils(pcdet: ModuleType) -> ModuleType:
    """OpenPCDet's ``eval_utils`` module (it lives in OpenPCDet's ``tools/``, not in ``pcdet``)."""
    name = "pcdet_ext_openpcdet_eval_utils"
    if name in sys.modules:
        return sys.modules[name]
    candidates = eval_utils_candidates(pcdet)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise PcdetMissing("OpenPCDet's tools/eval_utils/eval_utils.py was not found (looked in "
                           f"{', '.join(str(p) for p in candidates)}); install OpenPCDet from its source "
                           "checkout (python setup.py develop) or set OPENPCDET_ROOT to the checkout.")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


__all__ = [
    "OPENPCDET_INSTALL",
    "PcdetMissing",
    "add_openpcdet_root",
    "eval_utils_candidates",
    "import_eval_utils",
    "import_pcdet",
    "missing_pcdet_message",
]
