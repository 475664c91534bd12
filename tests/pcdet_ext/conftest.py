"""pcdet_ext tests: spconv's CPU patches on, and torch on one thread (the shared cores make
multi-threaded spconv slow and erratic). Shared by the adapter's tests: the repository paths, the
VoxelNeXt-shaped toy with BN statistics, OpenPCDet-format checkpoints, and the stand-in OpenPCDet
checkout (:mod:`tests.pcdet_ext.fake_openpcdet`) with quant configs and tool arguments for it, and
a tool run that must stop on an input error."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pcdet_ext = pytest.importorskip("pcdet_ext", reason="pcdet_ext needs spconv")

from rdoq_bench import voxelnext_toy as toy
from tests.conftest import stops_on_input_error
from tests.pcdet_ext.fake_openpcdet import write_fake_openpcdet

REPO = Path(__file__).resolve().parents[2]
PCDET_CONFIGS = sorted((REPO / "configs" / "pcdet").glob("*.yaml"))
HAS_PCDET = importlib.util.find_spec("pcdet") is not None


@pytest.fixture(autouse=True)
def _cpu_one_thread() -> Iterator[None]:
    pcdet_ext.apply_cpu_patches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batches() -> list[dict]:
    """Four toy scenes in batches of two."""
    return toy.batches_of(toy.make_scenes(4, seed=3), 2)


def toy_with_bn_stats(seed: int = 0) -> torch.nn.Module:
    """The narrow one-block toy (VoxelNeXt's module names) with random BN running statistics."""
    model = toy.build_toy(seed=seed, narrow=True, blocks=1)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def openpcdet_ckpt(state: dict[str, Any], path: Path, **extra: Any) -> Path:
    """Saves ``state`` in OpenPCDet's checkpoint format."""
    torch.save({"epoch": 20, "it": 1000, "model_state": state, "optimizer_state": None, "version": "pcdet+0.6.0",
                **extra}, path)
    return path


# Quant configs written into the stand-in checkout as <name>.yaml.
QDROP = {
    "w_qconfig": {"quantizer": "AdaRoundFakeQuantize", "observer": "MSEObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "AvgMinMaxObserver", "bit": 8},
    "calibrate": 2, "calib": {"split": "train", "batch_size": 1},
    "recon": {"iters": 2},
    "overrides": {"backbone_3d.conv_input.0": {"w_qconfig": {"bit": 8}, "a_qconfig": None}},
}
QDROP_ONE_FRAME = {**QDROP, "calibrate": 1, "recon": {"iters": 1}}
RDOQ = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "LSQFakeQuantize", "observer": "AvgMinMaxObserver", "bit": 8},
    "calibrate": 2, "calib": {"split": "train", "batch_size": 2}, "recon": None,
    "rdoq": {"target_rates": [2, 4], "apply_rate": 4, "weight_bits": [1, 2, 4, 6], "weight_ratios": [1.0],
             "projections": 1, "weight_group": 16},
}


@pytest.fixture(scope="module")
def fake_openpcdet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stand-in checkout on ``sys.path``, the working directory in its ``tools/``, and an FP
    checkpoint in OpenPCDet's format."""
    root = write_fake_openpcdet(tmp_path_factory.mktemp("OpenPCDet"))
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    sys.path.insert(0, str(root))
    os.chdir(root / "tools")
    try:
        from pcdet import config as fake_config
        from pcdet.models import build_network

        model_cfg = fake_config.AttrDict({"NARROW": True, "BLOCKS": 1})
        fp = build_network(model_cfg, 3, SimpleNamespace(class_names=list(toy.CLASS_NAMES)))
        gen = torch.Generator().manual_seed(0)
        for m in fp.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        ckpt = openpcdet_ckpt(fp.state_dict(), root / "voxelnext_toy.pth")
        for name, cfg in (("qdrop", QDROP), ("qdrop1", QDROP_ONE_FRAME), ("rdoq", RDOQ)):
            (root / f"{name}.yaml").write_text(json.dumps(cfg))  # JSON is YAML
        yield {"root": root, "ckpt": ckpt, "cfg": "cfgs/toy_models/voxelnext_toy.yaml"}
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        for name in [m for m in sys.modules if m == "pcdet" or m.startswith("pcdet.")
                     or m == "pcdet_ext_openpcdet_eval_utils"]:
            del sys.modules[name]


def tool_argv(env: dict[str, Any], work: Path, quant: str | None, *extra: str, ckpt: Path | None = None) -> list[str]:
    """A tool's arguments on the stand-in checkout: its config and checkpoint (or ``ckpt``), the
    work dir, no data workers, ``--quant_cfg <quant>.yaml`` unless ``quant`` is None, then ``extra``."""
    argv = ["--cfg_file", env["cfg"], "--ckpt", str(ckpt or env["ckpt"]), "--work_dir", str(work), "--workers", "0"]
    if quant is not None:
        argv += ["--quant_cfg", str(env["root"] / f"{quant}.yaml")]
    return [*argv, *extra]


def tool_fails(tool: Callable[[list[str]], Any], argv: list[str], err: type[BaseException], match: str,
               work: Path | None = None) -> str:
    """:func:`tests.conftest.stops_on_input_error` with this framework's evaluation never called."""
    import pcdet_ext.evaluate

    return stops_on_input_error(tool, argv, err, match, (pcdet_ext.evaluate, "evaluate"), work)
