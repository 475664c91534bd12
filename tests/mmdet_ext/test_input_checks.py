"""Input checks of the mmdet tools with real mmdet ("never silent, fail fast"): a corrupt, foreign or
non-finite checkpoint, a quantized checkpoint where the FP one is needed, an empty or imageless
annotation file, a work dir that cannot be written or that another run holds. Each stops before
the FP evaluation with one line ``error: <message>`` and exit status 2, the work dir untouched;
``--debug`` raises instead, and a bug keeps its traceback."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmdet_ext.prepare import AnnotationError
from rdoq_plugins.errors import InputError
from rdoq_plugins.files import StateDictMismatch
from rdoq_plugins.recon import DiskSpaceError
from rdoq_plugins.workflow.checkpoint import CheckpointError
from rdoq_plugins.workflow.work_dir import LOCK_NAME, WorkDirError
from tests.mmdet_ext.conftest import REPO, tool_fails
from tools.dp_alloc import main as run_dp_alloc
from tools.gen_rd_curves import main as run_curves
from tools.recon import main as run_recon
from tools.test import main as run_test_tool

FASTER = "faster_rcnn_r50_narrow_digits.py"
QUANT = "quant = dict(calibrate=4)"
@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    return make_config(quant=QUANT, name="checks")


@pytest.fixture
def ckpt(random_checkpoint: Callable[[str], Path]) -> Path:
    return random_checkpoint(FASTER)


def _argv(config: Path, ckpt: Path, work: Path, *extra: str) -> list[str]:
    return [str(config), str(ckpt), "--work-dir", str(work), *extra]


# Checkpoints

def test_random_bytes_are_not_a_checkpoint(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "random.pth"
    bad.write_bytes(os.urandom(1 << 16))
    message = tool_fails(run_test_tool, _argv(config, bad, tmp_path / "w"), CheckpointError,
                         rf"^{bad}: cannot be read as a torch checkpoint: corrupt or not a checkpoint", tmp_path / "w")
    assert "weights_only" not in message


def test_a_truncated_checkpoint_is_named(config: Path, ckpt: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pth"
    data = ckpt.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    message = tool_fails(run_test_tool, _argv(config, bad, tmp_path / "w"), CheckpointError,
                         rf"^{bad}: cannot be read as a torch checkpoint: truncated or corrupt", tmp_path / "w")
    assert "weights_only" not in message


def test_the_other_detectors_checkpoint_names_the_first_mismatches(
        config: Path, random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    retina = random_checkpoint("retinanet_r50_narrow_digits.py")
    message = tool_fails(run_test_tool, _argv(config, retina, tmp_path / "w"), StateDictMismatch,
                         rf"^checkpoint {retina} does not match the model: \d+ keys with other shapes \(e\.g\. "
                         r"neck\.lateral_convs\.0\.conv\.weight: \[64, 128, 1, 1\] given, \[64, 64, 1, 1\] in the "
                         r"model; .*\), \d+ missing keys \(e\.g\. \['neck\.lateral_convs\.3\.conv\.weight', .*\]\), "
                         r"\d+ unexpected keys \(e\.g\. \[.*'bbox_head\.", tmp_path / "w")
    assert not message.startswith("'")  # a KeyError's message, without the quotes str() adds


def test_non_finite_weights_name_the_first_tensors(config: Path, ckpt: Path, tmp_path: Path) -> None:
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"]["backbone.conv1.weight"][0, 0, 0, 0] = float("nan")
    state["state_dict"]["rpn_head.rpn_cls.bias"][:] = float("inf")
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    tool_fails(run_test_tool, _argv(config, bad, tmp_path / "w"), CheckpointError,
               rf"^{bad}: 2 tensors hold non-finite values: backbone\.conv1\.weight \(1 NaN, 0 inf of \d+\), "
               r"rpn_head\.rpn_cls\.bias \(0 NaN, 3 inf of 3\)$", tmp_path / "w")


def test_a_quantized_checkpoint_given_to_recon_names_what_to_pass(make_config: Callable[..., Path], ckpt: Path,
                                                                  tmp_path: Path) -> None:
    config = make_config(quant="quant = dict(calibrate=2, calib=dict(samples_per_gpu=2), recon=None)", name="ptq")
    run_test_tool(_argv(config, ckpt, tmp_path / "q", "--skip-fp"))  # writes q/quantized.pth
    quantized = tmp_path / "q" / "quantized.pth"
    tool_fails(run_recon, _argv(config, quantized, tmp_path / "w"), InputError,
               rf"^{quantized} is a quantized checkpoint \(a quantized\.pth of ours\); quantize the FP checkpoint "
               rf"it was made from instead, or evaluate this one with tools/test\.py CONFIG {quantized}$",
               tmp_path / "w")


# Annotation files

def _val_annotations(small_digits: Path) -> dict:
    return json.loads((small_digits / "annotations" / "instances_val.json").read_text())


@pytest.mark.parametrize(("content", "match"), [
    ("", r"^annotation file of the test split is empty \(0 bytes\): {path}$"),
    ('{"images": [', (r"^annotation file of the test split is not valid JSON \(Expecting value: line 1 column 13 "
                      r"\(char 12\)\): {path}$")),
    ("[]", r"^annotation file of the test split holds a JSON list, not the object .*: {path}$"),
    ("no images", r"^the test split has no images: {path} lists none$"),
])
def test_a_test_annotation_file_without_images_stops_before_the_fp_evaluation(
        config: Path, ckpt: Path, small_digits: Path, tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "instances_val.json"
    if content == "no images":
        content = json.dumps({**_val_annotations(small_digits), "images": [], "annotations": []})
    path.write_text(content)
    err = AnnotationError
    tool_fails(run_test_tool, _argv(config, ckpt, tmp_path / "w", "--cfg-options", f"data.test.ann_file={path}"), err,
               match.format(path=path), tmp_path / "w")


def test_a_missing_or_empty_calibration_annotation_file(config: Path, ckpt: Path, tmp_path: Path) -> None:
    path = tmp_path / "instances_train.json"
    tool_fails(run_test_tool, _argv(config, ckpt, tmp_path / "w", "--cfg-options", f"data.train.ann_file={path}"),
               FileNotFoundError, rf"^annotation file of the train split not found: {path}$", tmp_path / "w")
    path.write_text("")
    tool_fails(run_test_tool, _argv(config, ckpt, tmp_path / "w", "--cfg-options", f"data.train.ann_file={path}"),
               AnnotationError, rf"^annotation file of the train split is empty \(0 bytes\): {path}$", tmp_path / "w")


# The work dir

def test_a_work_dir_that_cannot_be_created(config: Path, ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    work = tmp_path / "file" / "w"
    tool_fails(run_test_tool, _argv(config, ckpt, work), WorkDirError,
               rf"^work dir {work} cannot be created: {tmp_path / 'file'} is not a folder$", work)
    tool_fails(run_test_tool, _argv(config, ckpt, tmp_path / "file"), WorkDirError,
               rf"^work dir {tmp_path / 'file'} is not a folder$")
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.parametrize("tool", [run_test_tool, run_recon, run_curves, run_dp_alloc],
                         ids=["test", "recon", "gen_rd_curves", "dp_alloc"])
def test_a_second_run_on_a_held_work_dir_stops_naming_the_holder(
        config: Path, ckpt: Path, held_work_dir: tuple[Path, int], tool: Callable[[list[str]], object]) -> None:
    work, pid = held_work_dir
    tool_fails(tool, _argv(config, ckpt, work), WorkDirError,
               rf"^work dir {work} is in use by process {pid} \(lock file {work / LOCK_NAME}\)")
    assert [p.name for p in work.iterdir()] == [LOCK_NAME]  # nothing written, the holder's lock kept
    assert (work / LOCK_NAME).read_text().split()[0] == str(pid)


def test_a_stale_lock_is_taken_over_and_released_on_an_error(
        make_config: Callable[..., Path], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from rdoq_plugins.recon import cost

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    work = tmp_path / "w"
    work.mkdir()
    (work / LOCK_NAME).write_text(f"{dead.pid}\n")
    monkeypatch.setattr(cost.shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    quant = "quant = dict(calibrate=4, hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook', cache_gb=0)])"
    with caplog.at_level(logging.WARNING, logger="rdoq_plugins"):
        tool_fails(run_test_tool, _argv(make_config(quant=quant, name="stale"), ckpt, work), DiskSpaceError, "would spill")
    assert f"work dir {work}: taking over the stale lock of process {dead.pid}" in caplog.text
    assert list(work.iterdir()) == []  # the check after the lock failed: lock released, nothing written


# How errors are shown

def test_debug_raises_the_input_error(config: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run_test_tool(_argv(config, tmp_path / "nope.pth", tmp_path / "w", "--debug"))
    assert not (tmp_path / "w").exists()


def test_a_bug_keeps_its_traceback_and_releases_the_lock(config: Path, ckpt: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.test

    def bug(*args: object, **kwargs: object) -> None:
        assert (tmp_path / "w" / LOCK_NAME).is_file()  # held while the run works
        raise RuntimeError("a bug")

    monkeypatch.setattr(tools.test, "plan_quantization", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        run_test_tool(_argv(config, ckpt, tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_the_command_line_prints_one_line_and_exits_2(config: Path, tmp_path: Path) -> None:
    # No GPU: torch's "No CUDA runtime is found" and mmcv's 2.0 notice are not printed either.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "tools/test.py", str(config), str(tmp_path / "nope.pth"), "--work-dir",
                          str(tmp_path / "w")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.splitlines() == [f"error: checkpoint not found: {tmp_path / 'nope.pth'}"]
    assert not (tmp_path / "w").exists()
