"""Shared test settings: CPU, deterministic seeds, a min-max W4A4 quant config, the check that a
tool stops on an input error as the command line does, and a work dir another process holds."""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from pathlib import Path; from rdoq_plugins.workflow.work_dir import WorkDirLock;"
        "lock = WorkDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(300)")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Min-max ranges, W4A4: fixed steps, so a quantized layer's output is checkable by hand.
MINMAX = {
    "w_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4, "ch_axis": 0},
    "a_qconfig": {"quantizer": "FixedFakeQuantize", "observer": "MinMaxObserver", "bit": 4},
}


def stops_on_input_error(tool: Callable[[list[str]], Any], argv: list[str], err: type[BaseException], match: str,
                         evaluate: tuple[Any, str], work: Path | None = None) -> str:
    """Runs ``tool(argv)`` and checks that it stops as the command line does on an input error:
    exit status 2, one line ``error: <message>`` (``match`` searched in it) on stderr and no
    traceback, an ``err`` behind it, ``evaluate`` (module, name) never called, and ``work`` (when
    given) not created. Returns the message."""
    stderr = io.StringIO()
    never = mock.patch.object(*evaluate, side_effect=AssertionError("evaluated before the check"))
    with never, pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(stderr):
        tool(argv)
    assert stop.value.code == 2, stop.value.code
    assert isinstance(stop.value.__context__, err), repr(stop.value.__context__)
    text = stderr.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in text, text
    message = errors[0].removeprefix("error: ")
    assert re.search(match, message), f"{match!r} not in {message!r}"
    if work is not None:
        assert not work.exists(), sorted(q.name for q in work.rglob("*"))
    return message


@pytest.fixture
def held_work_dir(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A work dir whose lock another process holds."""
    work = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield work, proc.pid
    proc.kill()
    proc.wait()
