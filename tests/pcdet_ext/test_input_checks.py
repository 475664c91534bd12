"""Input checks of the OpenPCDet tools, shared with the mmdet side, on the stand-in checkout: a
corrupt or non-finite checkpoint and a work dir that cannot be written or that another run holds
stop before any work with one line ``error: <message>`` and exit status 2."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from rdoq_plugins.workflow.checkpoint import CheckpointError
from rdoq_plugins.workflow.work_dir import LOCK_NAME, WorkDirError
from tests.pcdet_ext.conftest import tool_argv, tool_fails
from tools.pcdet import dp_alloc as dp_alloc_tool
from tools.pcdet import gen_rd_curves as curves_tool
from tools.pcdet import recon as recon_tool
from tools.pcdet import test as test_tool


def test_random_bytes_are_not_a_checkpoint(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "random.pth"
    bad.write_bytes(os.urandom(1 << 14))
    work = tmp_path / "work"
    message = tool_fails(test_tool.main, tool_argv(fake_openpcdet, work, "qdrop", ckpt=bad), CheckpointError,
                         rf"^{bad}: cannot be read as a torch checkpoint: corrupt or not a checkpoint", work)
    assert "weights_only" not in message and "--trust_ckpt" not in message


def test_non_finite_weights_name_the_tensor(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    ckpt = torch.load(fake_openpcdet["ckpt"], weights_only=True)
    key = next(k for k, v in ckpt["model_state"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["model_state"][key].view(-1)[1] = float("-inf")
    bad = tmp_path / "inf.pth"
    torch.save(ckpt, bad)
    work = tmp_path / "work"
    tool_fails(test_tool.main, tool_argv(fake_openpcdet, work, "qdrop", ckpt=bad), CheckpointError,
               rf"^{bad}: 1 tensors hold non-finite values: {re.escape(key)} \(0 NaN, 1 inf of \d+\)$", work)


def test_a_work_dir_that_cannot_be_created(fake_openpcdet: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    work = tmp_path / "file" / "work"
    tool_fails(recon_tool.main, tool_argv(fake_openpcdet, work, "qdrop"), WorkDirError,
               rf"^work dir {work} cannot be created: {tmp_path / 'file'} is not a folder$", work)


@pytest.mark.parametrize(("tool", "quant"), [(test_tool.main, "qdrop"), (recon_tool.main, "qdrop1"),
                                             (curves_tool.main, "rdoq"), (dp_alloc_tool.main, "rdoq")],
                         ids=["test", "recon", "gen_rd_curves", "dp_alloc"])
def test_a_second_run_on_a_held_work_dir_stops_naming_the_holder(
        fake_openpcdet: dict[str, Any], held_work_dir: tuple[Path, int], tool: Callable[[list[str]], Any],
        quant: str) -> None:
    work, pid = held_work_dir
    tool_fails(tool, tool_argv(fake_openpcdet, work, quant), WorkDirError,
               rf"^work dir {work} is in use by process {pid} \(lock file {work / LOCK_NAME}\)")
    assert [p.name for p in work.iterdir()] == [LOCK_NAME]
