"""A run's inputs are validated before any work (``pcdet_ext.prepare``): the checkpoint as prepare
reads it, and every bad input of a tool on the stand-in OpenPCDet checkout, with nothing written."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext.prepare import TRUST_HINT
from pcdet_ext.sparse_detector import save_quantized
from rdoq_plugins import ConfigError, fuse_conv_bn, load_quant_config
from rdoq_plugins.workflow.checkpoint import is_quantized, read_checkpoint
from rdoq_plugins.workflow.checkpoint import state_dict_of as fp_state_dict
from tests.pcdet_ext.conftest import tool_argv, toy_with_bn_stats
from tools.pcdet import test as test_tool


class NotAllowed:
    """A checkpoint entry ``torch.load(weights_only=True)`` refuses."""


def test_checkpoint_reading_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pth")
    torch.save({"model_state": toy_with_bn_stats(0).state_dict(), "extra": NotAllowed()}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="--trust_ckpt"):
        read_checkpoint(tmp_path / "pickled.pth", trust_hint=TRUST_HINT)
    assert "model_state" in read_checkpoint(tmp_path / "pickled.pth", trust=True)
    torch.save({"epoch": 3, "optimizer_state": None}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="no model weights"):
        fp_state_dict(read_checkpoint(tmp_path / "empty.pth"), tmp_path / "empty.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a checkpoint dict"):
        read_checkpoint(tmp_path / "list.pth")
    qcfg = load_quant_config({"recon": None})
    model = fuse_conv_bn(toy_with_bn_stats(0))
    pcdet_ext.quantize_sparse_model(model, qcfg)
    save_quantized(model, qcfg, tmp_path / "quantized.pth")
    assert is_quantized(read_checkpoint(tmp_path / "quantized.pth"))


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
            test_tool.main(tool_argv(env, work, None, *extra))
    with pytest.raises(KeyError, match="shared_conv"):
        test_tool.main(tool_argv(env, work, "qdrop", ckpt=tmp_path / "renamed.pth"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        test_tool.main(tool_argv(env, work, "qdrop", ckpt=tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="--cfg_file"):
        test_tool.main(["--cfg_file", "cfgs/nope.yaml", "--ckpt", str(env["ckpt"]), "--work_dir", str(work)])
    (tmp_path / "many.yaml").write_text("calibrate: 7\n")  # the train split has 6 frames
    with pytest.raises(ConfigError, match="more calibration frames"):
        test_tool.main(tool_argv(env, work, None, "--quant_cfg", str(tmp_path / "many.yaml")))
    # A QUANT section in the OpenPCDet config, changed by --set.
    with_quant = env["root"] / "tools" / "cfgs" / "toy_models" / "voxelnext_toy_quant.yaml"
    with_quant.write_text((env["root"] / "tools" / env["cfg"]).read_text() + "QUANT: {calibrate: 2, recon: null}\n")
    with pytest.raises(ConfigError, match="more calibration frames"):
        test_tool.main(["--cfg_file", "cfgs/toy_models/voxelnext_toy_quant.yaml", "--ckpt", str(env["ckpt"]),
                        "--work_dir", str(work), "--set", "QUANT.calibrate", "9"])
    assert not work.exists()
