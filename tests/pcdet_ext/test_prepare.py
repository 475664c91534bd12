"""A run's inputs are validated before any work (``pcdet_ext.prepare``): the checkpoint as prepare
reads it, and every bad input of a tool on the stand-in OpenPCDet checkout, with nothing written."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

import pcdet_ext
from pcdet_ext.prepare import TRUST_HINT
from pcdet_ext.sparse_detector import save_quantized
from rdoq_plugins import ConfigError, fuse_conv_bn, load_quant_config
from rdoq_plugins.errors import InputError
from rdoq_plugins.workflow.checkpoint import is_quantized, read_checkpoint
from rdoq_plugins.workflow.checkpoint import state_dict_of as fp_state_dict
from tests.pcdet_ext.conftest import tool_argv, tool_fails, toy_with_bn_stats
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
    cfg = re.escape(env["cfg"])
    cases = [
        (["--quant_cfg", str(tmp_path / "typo.yaml")], ConfigError, "did you mean 'drop_prob'"),
        (["--set", "QUANT", "1"], InputError,  # QUANT.* goes to the quant section; QUANT alone is a key
         (rf"^--set QUANT: {cfg} has no key 'QUANT' at the top level; the config has no QUANT section: "
          r"give the quant settings with --quant_cfg$")),
        (["--quant_cfg", str(env["root"] / "qdrop.yaml"), "--set", "QUANT.calibrat", "4"], ConfigError,
         r"^quant config: calibrat: unknown key \(did you mean 'calibrate'\?\)"),
        (["--quant_cfg", str(env["root"] / "qdrop.yaml"), "--set", "QUANT.calibrate", "7"], ConfigError,
         "more calibration frames"),  # the YAML has no QUANT key: --set changes --quant_cfg's section
        (["--set", "MODEL.NAROW", "True"], InputError,
         rf"^--set MODEL\.NAROW: {cfg} has no key 'NAROW' under MODEL; did you mean MODEL\.NARROW\?$"),
        (["--set", "model.NARROW", "True"], InputError,
         rf"^--set model\.NARROW: {cfg} has no key 'model' at the top level; did you mean MODEL\?$"),
        (["--set", "MODEL.NARROW.X", "1"], InputError, r"^--set MODEL\.NARROW\.X: MODEL\.NARROW in .* is a value"),
        (["--set", "MODEL.XYZ", "1"], InputError, r"has no key 'XYZ' under MODEL; keys there: BLOCKS, NAME, NARROW,"),
        (["--set", "MODEL.NARROW", "yes"], InputError, r"^--set MODEL\.NARROW yes: type mismatch"),
        (["--quant_cfg", str(env["root"] / "qdrop.yaml"), "--set", "MODEL.BLOCKS", "2"], KeyError, "does not match"),
    ]
    for extra, error, match in cases:  # input errors: one line and exit status 2; --debug: raised
        tool_fails(test_tool.main, tool_argv(env, work, None, *extra), error, match, work)
        with pytest.raises(error, match=match):
            test_tool.main(tool_argv(env, work, None, "--debug", *extra))
    tool_fails(test_tool.main, tool_argv(env, work, "qdrop", ckpt=tmp_path / "renamed.pth"), KeyError, "shared_conv")
    tool_fails(test_tool.main, tool_argv(env, work, "qdrop", ckpt=tmp_path / "nope.pth"), FileNotFoundError,
               "checkpoint not found")
    tool_fails(test_tool.main, ["--cfg_file", "cfgs/nope.yaml", "--ckpt", str(env["ckpt"]), "--work_dir", str(work)],
               FileNotFoundError, "--cfg_file")
    (tmp_path / "many.yaml").write_text("calibrate: 7\n")  # the train split has 6 frames
    tool_fails(test_tool.main, tool_argv(env, work, None, "--quant_cfg", str(tmp_path / "many.yaml")), ConfigError,
               "more calibration frames")
    # A QUANT section in the OpenPCDet config, changed by --set.
    with_quant = env["root"] / "tools" / "cfgs" / "toy_models" / "voxelnext_toy_quant.yaml"
    with_quant.write_text((env["root"] / "tools" / env["cfg"]).read_text() + "QUANT: {calibrate: 2, recon: null}\n")
    tool_fails(test_tool.main, ["--cfg_file", "cfgs/toy_models/voxelnext_toy_quant.yaml", "--ckpt", str(env["ckpt"]),
                                "--work_dir", str(work), "--set", "QUANT.calibrate", "9"], ConfigError,
               "more calibration frames")
    assert not work.exists()


def test_an_override_that_names_no_layer_stops_before_the_fp_evaluation(
        fake_openpcdet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pcdet_ext.evaluate

    monkeypatch.setattr(pcdet_ext.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    work = tmp_path / "work"
    (tmp_path / "typo.yaml").write_text("calibrate: 2\nrecon: null\n"
                                        "overrides: {backbone_3d.conv_inputs.0: {w_qconfig: {bit: 8}}}\n")
    try:  # raised, or printed as one line `error: <message>` with exit status 2
        test_tool.main(tool_argv(fake_openpcdet, work, None, "--quant_cfg", str(tmp_path / "typo.yaml")))
    except ConfigError as err:
        message = str(err)
    except SystemExit as exit_:
        assert exit_.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1].removeprefix("error: ")
    else:
        raise AssertionError("the run did not stop")
    assert re.fullmatch(r"quant config: overrides\.backbone_3d\.conv_inputs\.0: names no quantizable layer "
                        r"of the model \(closest layers: backbone_3d\.conv_input\.0.*\); "
                        r"got \{'w_qconfig': \{'bit': 8\}\}", message), message
    assert not work.exists()
