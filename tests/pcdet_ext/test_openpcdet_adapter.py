"""The OpenPCDet adapter (``pcdet_ext.openpcdet``) and its tools (``tools/pcdet/``).

Without OpenPCDet (always here): argument parsing, the clear "OpenPCDet missing" error of every
tool (run as a subprocess), strict checkpoint loading on the VoxelNeXt-shaped toy, config
validation (``configs/pcdet/`` included), the head-only forward pass, and the tools end to end on a
stand-in OpenPCDet checkout (:mod:`tests.pcdet_ext.fake_openpcdet`). With OpenPCDet and CUDA: the
real VoxelNeXt structure (skipped otherwise, with the reason).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext import openpcdet as op
from pcdet_ext.cli import parse_pcdet_args, tool_parser
from pcdet_ext.runner import save_quantized
from rdoq_plugins import ConfigError, fuse_conv_bn, load_quant_config
from rdoq_plugins.cli_flags import rdoq_from_flags
from tests.pcdet_ext import voxelnext_toy as toy
from tests.pcdet_ext.fake_openpcdet import write_fake_openpcdet
from tools.pcdet import dp_alloc as dp_alloc_tool
from tools.pcdet import gen_rd_curves as curves_tool
from tools.pcdet import recon as recon_tool
from tools.pcdet import test as test_tool

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("test", "recon", "gen_rd_curves", "dp_alloc")
PCDET_CONFIGS = sorted((REPO / "configs" / "pcdet").glob("*.yaml"))
HAS_PCDET = importlib.util.find_spec("pcdet") is not None


class NotAllowed:
    """A checkpoint entry ``torch.load(weights_only=True)`` refuses."""


# ---------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------
def test_test_tool_takes_openpcdets_flags_and_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    args = test_tool.parse_args(["--cfg_file", "cfgs/nuscenes_models/v.yaml", "--ckpt", "m.pth", "--batch_size", "8",
                                 "--workers", "2", "--extra_tag", "q", "--launcher", "pytorch", "--local-rank", "3",
                                 "--quant_cfg", "q.yaml", "--work_dir", "out", "--skip_fp",
                                 "--set", "DATA_CONFIG.DATA_PATH", "../data/x", "QUANT.calibrate", "8"])
    assert args.cfg_file == "cfgs/nuscenes_models/v.yaml" and args.ckpt == Path("m.pth")
    assert (args.batch_size, args.workers, args.extra_tag, args.launcher) == (8, 2, "q", "pytorch")
    assert args.local_rank == 3 and args.quant_cfg == Path("q.yaml") and args.work_dir == Path("out")
    assert args.skip_fp and args.set_cfgs == ["DATA_CONFIG.DATA_PATH", "../data/x", "QUANT.calibrate", "8"]
    base = ["--cfg_file", "c.yaml", "--ckpt", "m.pth"]
    assert test_tool.parse_args([*base, "--local_rank", "2"]).local_rank == 2
    defaults = test_tool.parse_args(base)
    assert (defaults.batch_size, defaults.workers, defaults.extra_tag, defaults.launcher) == (None, 4, "default", "none")
    assert defaults.local_rank is None and defaults.work_dir is None and defaults.set_cfgs is None
    monkeypatch.setenv("LOCAL_RANK", "5")  # torchrun
    assert test_tool.parse_args(base).local_rank == 5
    args = test_tool.parse_args([*base, "--quant-config", "a.yaml", "--work-dir", "w", "--skip-fp"])
    assert args.quant_cfg == Path("a.yaml") and args.work_dir == Path("w") and args.skip_fp
    with pytest.raises(SystemExit):
        test_tool.parse_args([*base, "--set", "ONLY_A_KEY"])
    with pytest.raises(SystemExit):
        test_tool.parse_args([*base, "--launcher", "slurm"])


def test_rdoq_tools_share_the_rdoq_flags() -> None:
    base = ["--cfg_file", "c.yaml", "--ckpt", "m.pth", "--work_dir", "w"]
    args = curves_tool.parse_args([*base, "--estimator", "measured", "--nchannelbatch", "16", "--testsize", "4",
                                   "--maxrates", "9"])
    cfg = rdoq_from_flags(None, args)
    assert cfg.estimator.value == "measured" and cfg.weight_group == cfg.act_group == 16
    assert cfg.calib_images == 4 and cfg.weight_bits == tuple(range(9))
    args = dp_alloc_tool.parse_args([*base, "--solver", "lagrangian", "--target_rates", "2", "4", "--min_bits", "1",
                                     "--no-measure"])
    cfg = rdoq_from_flags(load_quant_config(PCDET_CONFIGS[-1], extra_keys=op.EXTRA_KEYS).rdoq, args)
    assert args.no_measure and cfg.solver == "lagrangian" and cfg.target_rates == (2.0, 4.0) and cfg.apply_rate == 2.0
    assert cfg.min_bits == 1 and cfg.weight_group == 8  # the rest from the config
    with pytest.raises(SystemExit, match="rdoq.min_bits"):
        rdoq_from_flags(None, dp_alloc_tool.parse_args([*base, "--min_bits", "99"]))
    for tool in (recon_tool, curves_tool, dp_alloc_tool):  # the single-step tools need a work dir, as on mmdet's side
        with pytest.raises(SystemExit):
            tool.parse_args(["--cfg_file", "c.yaml", "--ckpt", "m.pth"])


def _run_tool(tool: str, extra: list[str], tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["--cfg_file", str(tmp_path / "c.yaml"), "--ckpt", str(tmp_path / "m.pth"), "--work_dir",
            str(tmp_path / "work"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(REPO / "tools" / "pcdet" / f"{tool}.py")
    cmd = [sys.executable, script, *argv] if code is None else [sys.executable, "-c", code, script, *argv]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.skipif(HAS_PCDET, reason="OpenPCDet is installed: the missing-OpenPCDet error cannot occur")
@pytest.mark.parametrize("tool", TOOLS)
def test_tools_say_how_to_install_openpcdet(tool: str, tmp_path: Path) -> None:
    out = _run_tool(tool, [], tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    assert "OpenPCDet (pcdet) is not importable" in out.stderr
    assert "python setup.py develop" in out.stderr and "spconv-cu" in out.stderr
    assert not (tmp_path / "work").exists()


def test_tools_say_how_to_install_spconv_when_it_is_missing(tmp_path: Path) -> None:
    # spconv hidden: pcdet_ext itself cannot load.
    code = ("import runpy, sys; sys.modules['spconv'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = _run_tool("test", [], tmp_path, code=code)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "spconv" in out.stderr and "spconv-cu" in out.stderr and "setup.py develop" in out.stderr


# ---------------------------------------------------------------------------------------------
# Strict checkpoints (on the toy: its module names are VoxelNeXt's)
# ---------------------------------------------------------------------------------------------
def _toy(seed: int = 0) -> torch.nn.Module:
    model = toy.build_toy(seed=seed, narrow=True, blocks=1)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def _openpcdet_ckpt(state: dict[str, Any], path: Path, **extra: Any) -> Path:
    torch.save({"epoch": 20, "it": 1000, "model_state": state, "optimizer_state": None, "version": "pcdet+0.6.0",
                **extra}, path)
    return path


def test_openpcdet_checkpoint_loads_strictly(tmp_path: Path) -> None:
    src = _toy(0)
    path = _openpcdet_ckpt(src.state_dict(), tmp_path / "ckpt.pth")
    ckpt = op.read_checkpoint(path)
    assert not op.is_quantized(ckpt)
    model = _toy(1)
    op.load_fp_weights(model, op.fp_state_dict(ckpt, path), "checkpoint")
    for (k, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    # Bare state dicts and 'state_dict' entries load too.
    assert op.fp_state_dict(src.state_dict(), path).keys() == src.state_dict().keys()
    assert op.fp_state_dict({"state_dict": src.state_dict()}, path).keys() == src.state_dict().keys()


@pytest.mark.parametrize("damage", ["renamed", "missing", "unexpected", "reshaped"])
def test_any_checkpoint_key_mismatch_is_an_error(damage: str, tmp_path: Path) -> None:
    state = _toy(0).state_dict()
    key = "dense_head.heads_list.0.center.0.1.running_mean"
    if damage == "renamed":
        state = {(k.replace("center.0.1", "centre.0.1") if k == key else k): v for k, v in state.items()}
    elif damage == "missing":
        del state[key]
    elif damage == "unexpected":
        state["dense_head.heads_list.0.iou.1.weight"] = torch.zeros(3)
    else:
        state[key] = state[key][:-1]
    path = _openpcdet_ckpt(state, tmp_path / "ckpt.pth")
    with pytest.raises(KeyError, match="does not match the model"):
        op.load_fp_weights(_toy(1), op.fp_state_dict(op.read_checkpoint(path), path), f"checkpoint {path}")


def test_spconv_1x_weight_layout_is_adapted(tmp_path: Path) -> None:
    src = _toy(0).state_dict()
    state = dict(src)
    w3d, w2d = "backbone_3d.conv2.0.0.weight", "backbone_3d.conv_out.0.weight"
    state[w3d] = src[w3d].permute(1, 2, 3, 4, 0).contiguous()  # [out, k, k, k, in] -> spconv 1.x [k, k, k, in, out]
    state[w2d] = src[w2d].permute(1, 2, 3, 0).contiguous()
    model = _toy(1)
    op.load_fp_weights(model, state, "checkpoint")
    assert torch.equal(model.state_dict()[w3d], src[w3d]) and torch.equal(model.state_dict()[w2d], src[w2d])
    state[w3d] = torch.zeros(3, 3, 3)  # no layout fits
    with pytest.raises(KeyError, match="does not match"):
        op.load_fp_weights(_toy(1), state, "checkpoint")


def test_checkpoint_reading_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        op.read_checkpoint(tmp_path / "nope.pth")
    torch.save({"model_state": _toy(0).state_dict(), "extra": NotAllowed()}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="--trust_ckpt"):
        op.read_checkpoint(tmp_path / "pickled.pth")
    assert "model_state" in op.read_checkpoint(tmp_path / "pickled.pth", trust=True)
    torch.save({"epoch": 3, "optimizer_state": None}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="no model weights"):
        op.fp_state_dict(op.read_checkpoint(tmp_path / "empty.pth"), tmp_path / "empty.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(TypeError, match="not a checkpoint dict"):
        op.read_checkpoint(tmp_path / "list.pth")
    qcfg = load_quant_config({"recon": None})
    model = fuse_conv_bn(_toy(0))
    pcdet_ext.quantize_sparse_model(model, qcfg)
    save_quantized(model, qcfg, tmp_path / "quantized.pth")
    assert op.is_quantized(op.read_checkpoint(tmp_path / "quantized.pth"))


# ---------------------------------------------------------------------------------------------
# Config validation
# ---------------------------------------------------------------------------------------------
def test_quant_section_from_the_config_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text("a_qconfig: {bit: 8}\ncalibrate: 16\n")
    cfg = {"MODEL": {}, "QUANT": {"w_qconfig": {"bit": 2}, "calibrate": 4, "calib": {"split": "test"}}}
    qcfg, calib = op.parse_quant(op.quant_section(cfg, tmp_path / "q.yaml"))
    assert (qcfg.w_qconfig.bit, qcfg.a_qconfig.bit, qcfg.calibrate) == (2, 8, 16)  # the file's keys win
    assert calib == {"split": "test", "batch_size": 2, "seed": 1005, "augment": False}
    assert op.parse_quant(op.quant_section({"MODEL": {}}, None))[0] == load_quant_config(None, ("calib",))
    with pytest.raises(ConfigError, match="upper case"):
        op.quant_section({"quant": {"calibrate": 4}}, None)
    with pytest.raises(ConfigError, match="expected a mapping"):
        op.quant_section({"QUANT": [1, 2]}, None)
    with pytest.raises(ConfigError, match="--quant_cfg"):
        op.quant_section({}, tmp_path / "missing.yaml")
    for bad, match in (({"recon": {"dro_prob": 0.5}}, "did you mean 'drop_prob'"),
                       ({"calib": {"split": "val"}}, "calib.split"),
                       ({"calib": {"samples_per_gpu": 2}}, "calib.samples_per_gpu"),
                       ({"calib": {"split": "test", "augment": True}}, "calib.augment"),
                       ({"calib": {"batch_size": 0}}, "calib.batch_size")):
        with pytest.raises(ConfigError, match=match):
            op.parse_quant(bad)


def test_calibration_frames_come_from_the_train_split_without_augmentation() -> None:
    data_cfg = {"INFO_PATH": {"train": ["a_train.pkl"], "test": ["a_val.pkl"]},
                "DATA_SPLIT": {"train": "train", "test": "val"}}
    cfg, training = op.calib_dataset_cfg(data_cfg, "train", augment=False)
    assert not training and cfg["INFO_PATH"]["test"] == ["a_train.pkl"] and cfg["DATA_SPLIT"]["test"] == "train"
    assert data_cfg["INFO_PATH"]["test"] == ["a_val.pkl"]  # the test config is untouched
    assert op.calib_dataset_cfg(data_cfg, "train", augment=True) == (data_cfg, True)
    assert op.calib_dataset_cfg(data_cfg, "test", augment=False) == (data_cfg, False)
    with pytest.raises(ConfigError, match="calibrate"):
        op.check_calib_size(10, 9)


def test_the_expected_pcdet_configs_exist() -> None:
    assert {p.stem for p in PCDET_CONFIGS} >= {
        "voxelnext_nuscenes_qdrop_w4a8", "voxelnext_nuscenes_qdrop_w4a4", "voxelnext_nuscenes_rdoq_w2a8",
        "voxelnext_nuscenes_rdoq_w4a8", "voxelnext_nuscenes_rdoq_w6a8", "voxelnext_nuscenes_rdoq_w8a8"}


@pytest.mark.parametrize("path", PCDET_CONFIGS, ids=lambda p: p.stem)
def test_pcdet_config_validates(path: Path) -> None:
    qcfg = load_quant_config(path, extra_keys=op.EXTRA_KEYS)
    op.calib_options(qcfg.extra.get("calib"))
    assert (qcfg.rdoq is not None) == ("rdoq" in path.stem)
    assert (qcfg.recon is not None) == ("qdrop" in path.stem)
    names = {n for n, _ in toy.build_toy(narrow=True, blocks=1).named_modules()}
    assert all(key in names for key, _ in qcfg.overrides)  # VoxelNeXt's module names (the toy mirrors them)
    if qcfg.rdoq is not None:
        rd = qcfg.rdoq
        assert (rd.solver, rd.estimator.value, rd.target.value) == ("dp", "second_order", "weight")
        assert rd.apply_rate == float(path.stem.split("_w")[-1].split("a")[0])
        assert rd.target_rates == (2.0, 4.0, 6.0, 8.0)
    else:
        assert qcfg.w_qconfig.bit == 4 and qcfg.a_qconfig.bit == int(path.stem[-1])


# ---------------------------------------------------------------------------------------------
# The forward pass the quantizer runs: modules before the head, then the heads, no post-processing
# ---------------------------------------------------------------------------------------------
class _Stage(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.inner, self.key = inner, key

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch[self.key] = self.inner(batch)
        return batch


class _PostProcessingHead(torch.nn.Module):
    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.heads_list = head.heads_list

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("post-processing (CUDA NMS in VoxelNeXt) must not run")


def _pcdet_shaped_toy() -> torch.nn.Module:
    src = _toy(0)
    model = torch.nn.Module()
    model.backbone_3d = _Stage(src.backbone_3d, "encoded_spconv_tensor")
    model.dense_head = _PostProcessingHead(src.dense_head)
    model.module_list = [model.backbone_3d, model.dense_head]
    return model.eval()


def test_head_forward_skips_post_processing_and_leaves_the_batch_alone() -> None:
    model = _pcdet_shaped_toy()
    op.check_supported(model)
    scene = toy.make_scenes(1, seed=3)[0]
    batch = {"voxel_features": scene.voxel_features.numpy(),
             "voxel_coords": np.pad(scene.voxel_coords.numpy(), ((0, 0), (1, 0))), "batch_size": 1,
             "frame_id": np.array(["f0"]), "image_shape": np.array([[4, 5]])}
    on_cpu = op.batch_on(batch, "cpu")
    assert on_cpu["voxel_coords"].dtype == torch.float32 and on_cpu["image_shape"].dtype == torch.int32
    assert isinstance(on_cpu["frame_id"], np.ndarray) and isinstance(batch["voxel_features"], np.ndarray)
    keys = set(on_cpu)
    with torch.no_grad():
        preds = op.head_forward(model, on_cpu)
        outs = op.head_outputs(model, on_cpu)
    assert set(on_cpu) == keys  # the modules wrote into a copy
    assert [list(p) for p in preds] == [["center", "center_z", "dim", "rot", "hm"]] * 2
    assert len(outs) == 10 and all(torch.equal(a, b) for a, b in zip(outs, [t for p in preds for t in p.values()]))
    _, outputs = op.make_run(torch.device("cpu"))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(outputs(model, batch), outs))
    # Unsupported shapes of detector are refused before any work.
    with pytest.raises(ValueError, match="single-stage"):
        op.check_supported(toy.build_toy(narrow=True, blocks=1))
    model.roi_head = torch.nn.Identity()
    model.module_list = [model.backbone_3d, model.dense_head, model.roi_head]
    with pytest.raises(ValueError, match="second stage"):
        op.check_supported(model)


# ---------------------------------------------------------------------------------------------
# The tools end to end on a stand-in OpenPCDet checkout (no OpenPCDet needed)
# ---------------------------------------------------------------------------------------------
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
        ckpt = _openpcdet_ckpt(fp.state_dict(), root / "voxelnext_toy.pth")
        for name, cfg in (("qdrop", QDROP), ("qdrop1", QDROP_ONE_FRAME), ("rdoq", RDOQ)):
            (root / f"{name}.yaml").write_text(json.dumps(cfg))  # JSON is YAML
        yield {"root": root, "ckpt": ckpt, "cfg": "cfgs/toy_models/voxelnext_toy.yaml"}
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        for name in [m for m in sys.modules if m == "pcdet" or m.startswith("pcdet.")
                     or m == "pcdet_ext_openpcdet_eval_utils"]:
            del sys.modules[name]


def _argv(env: dict[str, Any], work: Path, quant: str | None, *extra: str, ckpt: Path | None = None) -> list[str]:
    argv = ["--cfg_file", env["cfg"], "--ckpt", str(ckpt or env["ckpt"]), "--work_dir", str(work), "--workers", "0"]
    if quant is not None:
        argv += ["--quant_cfg", str(env["root"] / f"{quant}.yaml")]
    return [*argv, *extra]


def test_test_tool_quantizes_evaluates_and_reloads(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    import pcdet.datasets as fake_data
    import pcdet.models as fake_models

    work = tmp_path / "work"
    fake_data.READS.clear()
    calls = fake_models.HEAD_FORWARD_CALLS[0]
    report = test_tool.main(_argv(fake_openpcdet, work, "qdrop", "--batch_size", "2"))
    # Two evaluations of the 3 test frames in batches of 2; calibration never post-processes.
    assert fake_models.HEAD_FORWARD_CALLS[0] - calls == 4
    # Calibration read 2 of the 6 train frames (seeds 100..105) through the test pipeline.
    calib_reads = [s for mode, s in fake_data.READS if s >= 100]
    assert len(calib_reads) == 2 and all(mode == "test" for mode, _ in fake_data.READS)
    assert set(report["fp"]) >= {"mAP", "recall/roi_0.3", "AP_car"} and "note" not in report["fp"]
    assert set(report["quant"]) == set(report["fp"])
    assert report["method"] == "qdrop" and report["frames"] == 2 and report["world_size"] == 1
    assert 4.0 < report["bits"]["weight_avg"] < 4.5 and report["bits"]["act_avg"] == 8.0
    assert report["size_bytes"]["quant"] < report["size_bytes"]["fp32"] / 4
    assert {"prepare", "eval_fp", "calib_data", "calibrate", "reconstruct", "eval_quant"} <= set(report["time_s"])
    assert report["peak_rss_mb"] > 0 and len(report["recon_units"]) == 24
    assert json.loads((work / "report.json").read_text())["quant"] == report["quant"]
    assert (work / "eval" / "fp" / "result.pkl").is_file() and (work / "eval" / "quant" / "result.pkl").is_file()
    assert not list(work.glob(".*tmp*"))
    # The quantized checkpoint evaluates again without calibration, to the same result.
    fake_data.READS.clear()
    again = test_tool.main(_argv(fake_openpcdet, tmp_path / "again", None, ckpt=work / "quantized.pth"))
    assert again["quant"] == report["quant"] and again["fp"] == {} and again["bits"] == report["bits"]
    assert all(s < 100 for _, s in fake_data.READS)  # test frames only


def test_rdoq_tools_share_curves_with_the_test_tool(fake_openpcdet: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    info = curves_tool.main(_argv(fake_openpcdet, work, "rdoq"))
    assert info is not None and info["computed"] == info["layers"] > 20 and info["frames"] == 2
    again = curves_tool.main(_argv(fake_openpcdet, work, "rdoq"))
    assert again is not None and again["computed"] == 0 and again["dir"] == info["dir"]
    summary = dp_alloc_tool.main(_argv(fake_openpcdet, work, "rdoq", "--target_rates", "2", "3", "4"))
    assert summary is not None and [r["target_rate"] for r in summary["rates"]] == [2.0, 3.0, 4.0]
    assert all(r["measured_distortion"] is not None for r in summary["rates"])
    assert {p.name for p in (work / "rd_alloc").iterdir()} >= {"rate_2.json", "rate_3.json", "rate_4.json",
                                                                "summary.json", "rd_curves.png", "bits_heatmap.png"}
    assert "additivity: Pearson r" in capsys.readouterr().out
    report = test_tool.main(_argv(fake_openpcdet, work, "rdoq", "--skip_fp"))
    assert report["method"] == "rdoq" and report["fp"] == {} and report["quant"]
    assert report["rdoq"]["curves"]["computed"] == 0 and report["rdoq"]["curves"]["dir"] == info["dir"]
    assert report["rdoq"]["applied"]["avg_bits"] <= 4.0 + 1e-9
    with pytest.raises(FileNotFoundError, match="RD curves are missing"):
        dp_alloc_tool.main(_argv(fake_openpcdet, tmp_path / "fresh", "rdoq", "--no-measure"))


def test_recon_tool_writes_a_checkpoint_only(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    report = recon_tool.main(_argv(fake_openpcdet, tmp_path / "work", "qdrop1"))
    assert report is not None and report["fp"] == {} and report["quant"] == {} and report["frames"] == 1
    assert all(u["iters"] == 1 for u in report["recon_units"].values())
    assert {p.name for p in (tmp_path / "work").iterdir()} == {"quantized.pth", "report.json"}
    with pytest.raises(ValueError, match="quantized already"):
        recon_tool.main(_argv(fake_openpcdet, tmp_path / "other", None, ckpt=tmp_path / "work" / "quantized.pth"))


def test_bad_inputs_fail_before_any_work_and_write_nothing(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    env, work = fake_openpcdet, tmp_path / "work"
    (tmp_path / "typo.yaml").write_text("recon: {dro_prob: 0.5}\n")
    renamed = torch.load(env["ckpt"], weights_only=True)
    state = renamed["model_state"]
    renamed["model_state"] = {k.replace("shared_conv", "shared_conv_x"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    cases = [
        (["--quant_cfg", str(tmp_path / "typo.yaml")], ConfigError, "did you mean 'drop_prob'"),
        (["--set", "QUANT.calibrate", "1"], ValueError, "--set"),  # no QUANT section in the config
        (["--set", "MODEL.NARROW", "yes"], ValueError, "--set"),
        (["--quant_cfg", str(env["root"] / "qdrop.yaml"), "--set", "MODEL.BLOCKS", "2"], KeyError, "does not match"),
    ]
    for extra, error, match in cases:
        with pytest.raises(error, match=match):
            test_tool.main(_argv(env, work, None, *extra))
    with pytest.raises(KeyError, match="shared_conv"):
        test_tool.main(_argv(env, work, "qdrop", ckpt=tmp_path / "renamed.pth"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        test_tool.main(_argv(env, work, "qdrop", ckpt=tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="--cfg_file"):
        test_tool.main(["--cfg_file", "cfgs/nope.yaml", "--ckpt", str(env["ckpt"]), "--work_dir", str(work)])
    (tmp_path / "many.yaml").write_text("calibrate: 7\n")  # the train split has 6 frames
    with pytest.raises(ConfigError, match="more calibration frames"):
        test_tool.main(_argv(env, work, None, "--quant_cfg", str(tmp_path / "many.yaml")))
    # A QUANT section in the OpenPCDet config, changed by --set.
    with_quant = env["root"] / "tools" / "cfgs" / "toy_models" / "voxelnext_toy_quant.yaml"
    with_quant.write_text((env["root"] / "tools" / env["cfg"]).read_text() + "QUANT: {calibrate: 2, recon: null}\n")
    with pytest.raises(ConfigError, match="more calibration frames"):
        test_tool.main(["--cfg_file", "cfgs/toy_models/voxelnext_toy_quant.yaml", "--ckpt", str(env["ckpt"]),
                        "--work_dir", str(work), "--set", "QUANT.calibrate", "9"])
    assert not work.exists()


# ---------------------------------------------------------------------------------------------
# With OpenPCDet (and CUDA: VoxelNeXtHead puts tensors on the GPU when it is built)
# ---------------------------------------------------------------------------------------------
def _voxelnext(tools_dir: Path) -> torch.nn.Module:
    pcdet = op.import_pcdet(need_eval=False)
    cwd = os.getcwd()
    os.chdir(tools_dir)
    try:
        cfg = op.load_pcdet_config(pcdet, "cfgs/nuscenes_models/cbgs_voxel0075_voxelnext.yaml")
    finally:
        os.chdir(cwd)
    dataset = SimpleNamespace(class_names=list(cfg.CLASS_NAMES), point_feature_encoder=SimpleNamespace(
        num_point_features=5), grid_size=np.array([1440, 1440, 40]), point_cloud_range=np.array(
        cfg.DATA_CONFIG.POINT_CLOUD_RANGE, dtype=np.float32), voxel_size=[0.075, 0.075, 0.2],
        depth_downsample_factor=None)
    return pcdet.build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=dataset)


NO_REAL_VOXELNEXT = (
    "OpenPCDet (pcdet) is not importable: install it from source (python setup.py develop) with spconv-cuXXX"
    if not HAS_PCDET else "no CUDA: OpenPCDet's VoxelNeXtHead puts tensors on the GPU when it is built"
    if not torch.cuda.is_available() else "")


@pytest.mark.skipif(bool(NO_REAL_VOXELNEXT), reason=NO_REAL_VOXELNEXT)
def test_real_voxelnext_structure() -> None:  # pragma: no cover - needs OpenPCDet and a GPU
    pcdet = op.import_pcdet(need_eval=False)
    tools_dir = Path(pcdet.pcdet.__file__).resolve().parents[1] / "tools"
    model = _voxelnext(tools_dir)
    op.check_supported(model)
    state = copy.deepcopy(model.state_dict())
    op.load_fp_weights(model, state, "own state")
    fuse_conv_bn(model)
    assert not op.remaining_batchnorms(model)
    wrapped = pcdet_ext.quantize_sparse_model(model, load_quant_config(None))
    assert len(wrapped) == 25 + 5 + 1 + 73
    units = pcdet_ext.sparse_units(model)
    assert len(units) == 56 and sum(k.value == "head_branch" for k in units.values()) == 36
    coords = torch.unique(torch.randint(0, 40, (2000, 3)), dim=0)
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords * torch.tensor([1, 30, 30])], dim=1)
    batch = {"voxels": torch.rand(len(coords), 10, 5), "voxel_num_points": torch.full((len(coords),), 10.0),
             "voxel_coords": coords.float(), "batch_size": 1}
    model = model.cuda().eval()
    with torch.no_grad():
        assert len(op.head_outputs(model, op.batch_on(batch, "cuda"))) == 36


def test_importing_the_adapter_loads_no_openpcdet() -> None:
    code = ("import sys, pcdet_ext, pcdet_ext.openpcdet, pcdet_ext.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pcdet', 'mmdet', 'mmcv'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_argparse_namespace_is_what_prepare_reads() -> None:
    parser = tool_parser(None, work_dir_required=False)
    args = parse_pcdet_args(parser, ["--cfg_file", "c.yaml", "--ckpt", "m.pth"])
    for name in ("cfg_file", "ckpt", "set_cfgs", "quant_cfg", "work_dir", "batch_size", "workers", "extra_tag",
                 "launcher", "local_rank", "trust_ckpt", "save_to_file"):
        assert hasattr(args, name), name
    assert isinstance(args, argparse.Namespace)
