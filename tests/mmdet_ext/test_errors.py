"""Bad input fails before any long work, with a clear message, and writes nothing."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rdoq_plugins.config import ConfigError
from rdoq_plugins.recon import DiskSpaceError
from tests.mmdet_ext.conftest import tool_fails
from tools.test import main as run_test_tool


def _fails(config: Path, ckpt: Path, work: Path, err: type[Exception], match: str, *extra: str) -> None:
    """tools/test.py stops with one line ``error: <match>``, status 2, before the FP evaluation,
    with ``work`` untouched."""
    tool_fails(run_test_tool, [str(config), str(ckpt), "--work-dir", str(work), *extra], err, match, work)


def test_missing_checkpoint(make_config: Callable[..., Path], tmp_path: Path) -> None:
    _fails(make_config(), tmp_path / "nope.pth", tmp_path / "w", FileNotFoundError, "checkpoint not found")


def test_checkpoint_keys_that_do_not_match(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],
                                           tmp_path: Path) -> None:
    ckpt = torch.load(random_checkpoint("faster_rcnn_r50_narrow_digits.py"), weights_only=True)
    ckpt["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    del ckpt["state_dict"]["neck.fpn_convs.0.conv.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    _fails(make_config(), bad, tmp_path / "w", KeyError, "1 missing keys.*fpn_convs.0.conv.weight.*1 unexpected")


@pytest.mark.parametrize(("quant", "match"), [
    ("quant = dict(w_qconfig=dict(quantizer='AdaRoundFakeQuantise'))", "w_qconfig.quantizer.*AdaRoundFakeQuantize"),
    ("quant = dict(a_qconfig=dict(bit=33))", r"a_qconfig.bit: out of range; got 33; allowed: an integer in \[1, 16\]"),
    ("quant = dict(calibrate=100)", r"calibrate: more calibration images than the calibration split has \(16\)"),
    ("quant = dict(calibrate=4, heads=dict(bbox_head=False))", "heads.bbox_head: this detector has no such head.*rpn_head, roi_head"),
    ("quant = dict(hooks=[dict(type='QDropRecon')])", "hooks\\[0\\].type: not in mmcv's HOOKS registry.*QDropReconHook"),
    ("quant = dict(calib=dict(split='val'))", "calib.split: unknown value; got .val.; allowed: test, train"),
    ("quant = dict(calibrate=4, recon=dict(exclude=['bbox_head.*']))",
     "recon.exclude: matches no reconstruction unit; got .bbox_head"),
    ("quant = dict(per_level_act='yes')", "per_level_act: expected a boolean; got 'yes'; allowed: true, false"),
    ("quant = dict(rdoq=dict(target='both'))", "rdoq.act_rate: is required with target 'both'"),
    ("quant = dict(rd_target='probs')", "rd_target: unknown value; got 'probs'; allowed: scores, logits"),
    ("quant = dict(hooks=[dict(type='QDropReconHook', cache_dtype='fp8')])",
     "hooks.QDropReconHook.cache_dtype: unknown dtype; got 'fp8'; allowed: float16, bfloat16, float32"),
    ("quant = dict(hooks=[dict(type='QDropReconHook', cache_size=4)])",
     r"hooks\[0\]: bad arguments for QDropReconHook .*cache_size"),
])
def test_bad_quant_section(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
                           quant: str, match: str) -> None:
    config = make_config(quant=quant, name=f"bad{abs(hash(quant))}")
    _fails(config, random_checkpoint("faster_rcnn_r50_narrow_digits.py"), tmp_path / "w", ConfigError, match)


def test_bad_quant_config_file(make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path],
                               tmp_path: Path) -> None:
    yaml_file = tmp_path / "q.yaml"
    yaml_file.write_text("recon:\n  drop_prob: 1.5\n")
    _fails(make_config(), random_checkpoint("faster_rcnn_r50_narrow_digits.py"), tmp_path / "w", ConfigError,
           r"recon.drop_prob: out of range", "--quant-config", str(yaml_file))


def test_a_spill_the_disk_cannot_hold_stops_before_the_fp_evaluation(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.test
    from rdoq_plugins.recon import cost

    monkeypatch.setattr(cost.shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    monkeypatch.setattr(tools.test, "evaluate", lambda *a, **k: pytest.fail("evaluated before the disk check"))
    quant = "quant = dict(calibrate=4, hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook', cache_gb=0)])"
    _fails(make_config(quant=quant, name="nodisk"), random_checkpoint("faster_rcnn_r50_narrow_digits.py"),
           tmp_path / "w", DiskSpaceError, r"would spill \d+\.\d MB of \S+'s cache to .*spill_rank0, which has 0\.0 MB free")


def _input_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line message of the ConfigError a tools/test.py run stops with: raised, or printed
    as ``error: <message>`` with exit status 2."""
    try:
        run_test_tool(argv)
    except ConfigError as err:
        return str(err)
    except SystemExit as exit_:
        assert exit_.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1].removeprefix("error: ")
    raise AssertionError("the run did not stop")


TYPO_OVERRIDE = "quant = dict(calibrate=4, overrides={'backbone.conv_1': dict(w_qconfig=dict(bit=8), a_qconfig=None)})"
TYPO_MESSAGE = (r"quant config: overrides\.backbone\.conv_1: names no quantizable layer of the model \(closest "
                r"layers: backbone\.conv1, .*\); got \{'w_qconfig': \{'bit': 8\}, 'a_qconfig': None\}")
# RetinaNet's head pattern on Faster R-CNN, whose bbox_head sits in roi_head.
RETINA_OVERRIDE = ("quant = dict(calibrate=4, overrides={'re:bbox_head\\\\..*': "
                   "dict(w_qconfig=dict(observer='MinMaxObserver'))})")
RETINA_MESSAGE = (r"quant config: overrides\.re:bbox_head\\\..\*: matches no quantizable layer of the model "
                  r"\(the pattern must match whole names; it matches inside roi_head\.bbox_head\..*\); "
                  r"got \{'w_qconfig': \{'observer': 'MinMaxObserver'\}\}")


@pytest.mark.parametrize(("quant", "match"), [(TYPO_OVERRIDE, TYPO_MESSAGE), (RETINA_OVERRIDE, RETINA_MESSAGE)],
                         ids=["name", "pattern"])
def test_an_override_that_names_no_layer_stops_before_the_fp_evaluation(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], quant: str, match: str) -> None:
    import tools.test

    monkeypatch.setattr(tools.test, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    config = make_config(quant=quant, name=f"override{abs(hash(quant))}")
    message = _input_error([str(config), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")),
                            "--work-dir", str(tmp_path / "w")], capsys)
    assert re.fullmatch(match, message), message
    assert not (tmp_path / "w").exists()


def test_an_override_from_the_quant_config_file_is_checked_too(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tools.test

    monkeypatch.setattr(tools.test, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    yaml_file = tmp_path / "q.yaml"
    yaml_file.write_text("calibrate: 4\nrecon: null\noverrides:\n  roi_head.bbox_head.fc_cl: null\n")
    message = _input_error([str(make_config()), str(random_checkpoint("faster_rcnn_r50_narrow_digits.py")),
                            "--work-dir", str(tmp_path / "w"), "--quant-config", str(yaml_file)], capsys)
    assert message.startswith("quant config: overrides.roi_head.bbox_head.fc_cl: names no quantizable layer "
                              "of the model (closest layers: roi_head.bbox_head.fc_cls"), message
    assert message.endswith("; got None")
    assert not (tmp_path / "w").exists()
